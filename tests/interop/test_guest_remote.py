"""``guest`` may log in only from a loopback address (RabbitMQ's default
``loopback_users = guest``), over AMQP and over the management API.

The test starts a broker of its own listening on 0.0.0.0 and reaches it from
a second network namespace over a veth pair (a random 10.x.y.0/30 subnet), so
the broker sees a non-loopback peer address.  It needs root and ``ip netns``
(skipped otherwise) and a broker of its own (skipped in AMQP_URL mode).

What RabbitMQ 3.10 does (the assertions below):

* guest from a non-loopback address, right password: with the
  ``authentication_failure_close`` capability the broker sends
  connection.close 403 ``ACCESS_REFUSED - Login was refused using
  authentication mechanism PLAIN. For details see the broker logfile.``
  (class 0, method 0; the same text as for a wrong password) instead of
  connection.tune; pika raises ProbableAuthenticationError.
* any other user connects from that address (over AMQP and the management
  API); guest over 127.0.0.1 is unaffected.
* the management API refuses guest from that address with 401
  ``{"error": "not_authorised", "reason": "User can only log in via
  localhost"}``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass

import pika
import pytest

from brokerctl import pika_params
from mgmt import Mgmt
from queue_helpers import wait_until

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")
LOCALHOST_ONLY = {"error": "not_authorised", "reason": "User can only log in via localhost"}
CMD_TIMEOUT = 30


def run(*cmd, check=True):
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Remote:
    netns: str
    host_ip: str  # the root namespace's end of the veth pair (the broker's address)
    peer_ip: str  # the client's address inside the namespace


def _free_subnet() -> tuple[str, str]:
    used = run("ip", "-4", "addr", "show").stdout + run("ip", "-4", "route", "show", "table", "all").stdout
    for _ in range(100):
        a, b = random.randint(16, 250), random.randint(0, 255)
        prefix = f"10.{a}.{b}."
        if prefix not in used:
            c = random.randrange(0, 256, 4)
            return f"{prefix}{c + 1}", f"{prefix}{c + 2}"
    pytest.skip("no free 10.x.y.0/30 subnet found")


@pytest.fixture
def remote():
    """A network namespace linked to this one by a veth pair."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace and a veth pair")
    if shutil.which("ip") is None:
        pytest.skip("needs the ip command (iproute2) for ip netns")
    tag = uuid.uuid4().hex[:6]
    netns, host_if, peer_if = f"warren-it-{tag}", f"wit{tag}a", f"wit{tag}b"
    proc = run("ip", "netns", "add", netns, check=False)
    if proc.returncode != 0:
        pytest.skip(f"ip netns is unavailable: {proc.stderr.strip()}")
    try:
        host_ip, peer_ip = _free_subnet()
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        run("ip", "link", "set", peer_if, "netns", netns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        run("ip", "link", "set", host_if, "up")
        run("ip", "netns", "exec", netns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if)
        run("ip", "netns", "exec", netns, "ip", "link", "set", peer_if, "up")
        run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up")
        yield Remote(netns, host_ip, peer_ip)
    finally:
        run("ip", "link", "del", host_if, check=False)  # takes the peer with it
        run("ip", "netns", "del", netns, check=False)


# Runs inside the namespace: one AMQP login with pika, one raw handshake
# (protocol header, start-ok, then whatever the broker answers), one
# management API request; prints the outcomes as JSON.
CLIENT = r'''
import base64, json, socket, sys, urllib.error, urllib.request
import pika, pika.frame, pika.spec

host, port, mgmt_port, user, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
out = {}

params = pika.ConnectionParameters(host, port, credentials=pika.PlainCredentials(user, password),
                                   socket_timeout=10, stack_timeout=20, connection_attempts=1)
try:
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare("", exclusive=True)
    conn.close()
    out["pika"] = {"ok": True}
except Exception as exc:
    out["pika"] = {"ok": False, "type": type(exc).__name__, "str": str(exc)}

sock = socket.create_connection((host, port), timeout=10)
buf, methods, closed = b"", [], False
def recv():
    global buf, closed
    while True:
        if buf:
            used, frame = pika.frame.decode_frame(buf)
            if frame is not None:
                buf = buf[used:]
                if isinstance(frame, pika.frame.Method):
                    return frame.method
                continue
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            closed = True
            return None
        buf += data
sock.sendall(b"AMQP\x00\x00\x09\x01")
start = recv()
sock.sendall(pika.frame.Method(0, pika.spec.Connection.StartOk(
    client_properties={"product": "interop", "capabilities": {"authentication_failure_close": True}},
    mechanism="PLAIN", response=b"\0" + user.encode() + b"\0" + password.encode(),
    locale="en_US")).marshal())
reply = recv()
raw = {"start": isinstance(start, pika.spec.Connection.Start), "reply": type(reply).__name__}
if isinstance(reply, pika.spec.Connection.Close):
    raw.update(code=reply.reply_code, text=reply.reply_text, class_id=reply.class_id,
               method_id=reply.method_id)
    sock.sendall(pika.frame.Method(0, pika.spec.Connection.CloseOk()).marshal())
    while recv() is not None:
        pass
    raw["closed"] = closed
sock.close()
out["raw"] = raw

req = urllib.request.Request(f"http://{host}:{mgmt_port}/api/whoami", headers={
    "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
try:
    with urllib.request.urlopen(req, timeout=10) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as err:
    status, body = err.code, err.read()
try:
    body = json.loads(body)
except ValueError:
    body = body.decode("utf-8", "replace")
out["http"] = {"status": status, "body": body}
print(json.dumps(out))
'''


def from_remote(remote: Remote, proc, user: str, password: str) -> dict:
    result = subprocess.run(
        ["ip", "netns", "exec", remote.netns, sys.executable, "-c", CLIENT,
         remote.host_ip, str(proc.port), str(proc.mgmt_port), user, password],
        capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(240)
def test_guest_is_refused_from_a_remote_address(remote, broker_factory):
    proc = broker_factory.start(bind="0.0.0.0")
    admin = Mgmt(proc.mgmt_url, "guest", "guest")  # over 127.0.0.1
    # the management listener may come up after the AMQP one
    def mgmt_up():
        try:
            return admin.get("/api/whoami").status == 200
        except OSError:
            return False

    wait_until(mgmt_up, timeout=60, interval=0.2, what="the management API")

    # guest from the other namespace: refused over AMQP and HTTP
    out = from_remote(remote, proc, "guest", "guest")
    assert out["raw"] == {"start": True, "reply": "Close", "code": 403, "text": LOGIN_REFUSED,
                          "class_id": 0, "method_id": 0, "closed": True}
    assert out["pika"]["ok"] is False
    assert out["pika"]["type"] == "ProbableAuthenticationError"
    assert f"(403) '{LOGIN_REFUSED}'" in out["pika"]["str"]
    assert out["http"] == {"status": 401, "body": LOCALHOST_ONLY}

    # another user, created over the management API, is fine from there
    name, password = f"remote-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    admin.create_user(name, password, tags="management")
    admin.set_permissions("/", name)
    out = from_remote(remote, proc, name, password)
    assert out["pika"] == {"ok": True}
    assert out["raw"]["reply"] == "Tune"
    assert out["http"] == {"status": 200, "body": {"name": name, "tags": ["management"]}}

    # and guest over loopback still works
    conn = pika.BlockingConnection(pika_params(proc.broker))
    try:
        conn.channel().queue_declare("", exclusive=True)
    finally:
        conn.close()
    assert admin.get("/api/whoami").body == {"name": "guest", "tags": ["administrator"]}
