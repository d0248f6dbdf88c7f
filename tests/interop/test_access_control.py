"""Virtual hosts, users, permissions and topic permissions as AMQP clients see
them, set up through the management HTTP API (checked against RabbitMQ 3.10).

What RabbitMQ 3.10 does (the assertions below):

* connection.open to a missing vhost: connection.close 530
  ``NOT_ALLOWED - vhost V not found`` (no quotes around V); to a vhost the user
  has no permission entry on: 530 ``NOT_ALLOWED - access to vhost 'V' refused
  for user 'U'``; both name connection.open (class 10, method 40).  A
  permission entry with three empty patterns is enough to open the vhost.
  pika raises ProbableAccessDeniedError.
* bad password / unknown user: with the ``authentication_failure_close``
  capability (pika, and most clients, send it) connection.close 403
  ``ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN.
  For details see the broker logfile.`` (class 0, method 0), then the socket
  closes; without the capability the socket just closes.  pika raises
  ProbableAuthenticationError.
* every refused permission check is a channel error 403
  ``ACCESS_REFUSED - access to <queue|exchange> 'N' in vhost 'V' refused for
  user 'U'`` (no "configure"/"write"/"read" in the text); the connection stays
  open.  Permission checks come before existence checks (a refused
  exchange.delete / basic.publish / basic.get on a missing object is 403, not
  a 404 or an ok).  The default exchange is checked under the name
  ``amq.default``.  Patterns are unanchored regex searches; an empty pattern
  matches nothing (it is treated as ``^$``).
* topic permissions (topic exchanges only): 403 ``ACCESS_REFUSED - access to
  topic 'RK' in exchange 'X' in vhost 'V' refused for user 'U'``; write is
  checked on basic.publish, read on queue.bind/unbind and on
  exchange.bind/unbind with a topic *source*; ``{username}`` and ``{vhost}``
  are expanded in the patterns; no entry for the exchange means allowed.
* deleting a vhost closes its connections: connection.close 320
  ``CONNECTION_FORCED - vhost 'V' is deleted`` (now and then ``... is down``:
  RabbitMQ races two closers); deleting a user closes the
  user's connections: 320 ``CONNECTION_FORCED - user 'U' is deleted``; both
  drop the permissions that referred to them.
* changing a password leaves open connections alone; new logins need the new
  password.  Revoking permissions leaves connections and channels open; each
  channel caches the checks it has passed (RabbitMQ keeps the last 12), so a
  revoked permission is still honoured for the same resource and operation on
  a channel that already used it, while new channels and new resources are
  refused at once.  Grants take effect at once.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional, Union

import pika
import pika.exceptions
import pika.frame
import pika.spec
import pytest

from mgmt import SHA256, password_hash, q

CLOSE_WAIT = 5.0  # seconds: the broker closes connections within milliseconds

LOGIN_REFUSED = ("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
                 "For details see the broker logfile.")


def refused(kind: str, name: str, vhost: str, user: str) -> str:
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"


def topic_refused(key: str, exchange: str, vhost: str, user: str) -> str:
    return (f"ACCESS_REFUSED - access to topic '{key}' in exchange '{exchange}' "
            f"in vhost '{vhost}' refused for user '{user}'")


def attempt(ch, op: Callable) -> Union[str, tuple]:
    """Runs ``op(ch)``: "ok", or (reply_code, reply_text) of the channel.close.
    A synchronous round trip after the op surfaces refusals of asynchronous
    methods (basic.publish)."""
    try:
        op(ch)
        ch.basic_qos(prefetch_count=0)
        return "ok"
    except pika.exceptions.ChannelClosedByBroker as exc:
        return (exc.reply_code, exc.reply_text)


def wait_closed_by_broker(conn, timeout: float = CLOSE_WAIT):
    """Pumps ``conn`` until the broker closes it: (reply_code, reply_text)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            conn.process_data_events(0.05)
    except pika.exceptions.ConnectionClosedByBroker as exc:
        return (exc.reply_code, exc.reply_text)
    raise AssertionError(f"connection still open after {timeout}s")


def stays_open(conn, seconds: float = 0.5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.process_data_events(0.05)
    return conn.is_open


# --- a bare AMQP handshake, to see exactly what the broker sends ---------------------

@dataclass
class Handshake:
    methods: list          # connection methods received after start, in order
    closed: bool           # the broker closed the socket (EOF or reset)

    @property
    def close(self) -> Optional[pika.spec.Connection.Close]:
        for m in self.methods:
            if isinstance(m, pika.spec.Connection.Close):
                return m
        return None

    @property
    def opened(self) -> bool:
        return any(isinstance(m, pika.spec.Connection.OpenOk) for m in self.methods)


def raw_handshake(broker, user: str, password: str, vhost: str = "/",
                  capabilities: Optional[dict] = None, timeout: float = 5.0) -> Handshake:
    """protocol header, start-ok (PLAIN), tune-ok, open; answers a
    connection.close with close-ok and reads until the socket closes."""
    sock = socket.create_connection((broker.host, broker.port), timeout=timeout)
    buf = b""
    methods, closed = [], False

    def recv():
        nonlocal buf, closed
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
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                closed = True
                return None
            buf += data

    def send(method):
        try:
            sock.sendall(pika.frame.Method(0, method).marshal())
        except (ConnectionResetError, BrokenPipeError):
            pass

    try:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        start = recv()
        assert isinstance(start, pika.spec.Connection.Start), start
        props = {"product": "interop raw handshake"}
        if capabilities is not None:
            props["capabilities"] = capabilities
        send(pika.spec.Connection.StartOk(
            client_properties=props, mechanism="PLAIN",
            response=b"\0" + user.encode() + b"\0" + password.encode(), locale="en_US"))
        while not closed:
            method = recv()
            if method is None:
                break
            methods.append(method)
            if isinstance(method, pika.spec.Connection.Tune):
                send(pika.spec.Connection.TuneOk(channel_max=method.channel_max,
                                                 frame_max=method.frame_max, heartbeat=0))
                send(pika.spec.Connection.Open(virtual_host=vhost))
            elif isinstance(method, pika.spec.Connection.Close):
                send(pika.spec.Connection.CloseOk())
            elif isinstance(method, pika.spec.Connection.OpenOk):
                break
    finally:
        sock.close()
    return Handshake(methods, closed)


AFC = {"authentication_failure_close": True}


# --- vhosts ------------------------------------------------------------------------

def test_user_with_permissions_works_in_its_vhost(mgmt, vhost, user, connect_as):
    mgmt.set_permissions(vhost, user.name)
    conn = connect_as(user, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q")
    ch.basic_publish("", "q", b"hello")
    method, _props, body = ch.basic_get("q", auto_ack=True)
    assert body == b"hello" and method.routing_key == "q"


def test_vhosts_are_isolated(mgmt, vhost_factory, connect_as, broker):
    a, b = vhost_factory(".a"), vhost_factory(".b")
    ch_a = connect_as(broker.user, a, broker.password).channel()
    ch_a.confirm_delivery()
    ch_a.exchange_declare("only-in-a", "direct")
    ch_a.queue_declare("only-in-a")
    ch_a.queue_declare("both")
    ch_a.basic_publish("", "both", b"in a")

    conn_b = connect_as(broker.user, b, broker.password)
    ch_b = conn_b.channel()
    assert attempt(ch_b, lambda ch: ch.queue_declare("only-in-a", passive=True)) == \
        (404, f"NOT_FOUND - no queue 'only-in-a' in vhost '{b}'")
    ch_b = conn_b.channel()
    assert attempt(ch_b, lambda ch: ch.exchange_declare("only-in-a", "direct", passive=True)) == \
        (404, f"NOT_FOUND - no exchange 'only-in-a' in vhost '{b}'")
    ch_b = conn_b.channel()
    assert attempt(ch_b, lambda ch: ch.basic_publish("only-in-a", "k", b"x")) == \
        (404, f"NOT_FOUND - no exchange 'only-in-a' in vhost '{b}'")
    # a queue of the same name in B is a different queue
    ch_b = conn_b.channel()
    assert ch_b.queue_declare("both").method.message_count == 0
    assert ch_b.basic_get("both", auto_ack=True)[0] is None
    assert ch_a.basic_get("both", auto_ack=True)[2] == b"in a"


def test_open_missing_vhost(broker, uid, pika_connect):
    name = f"{uid}.missing"
    hs = raw_handshake(broker, broker.user, broker.password, vhost=name, capabilities=AFC)
    close = hs.close
    assert close is not None, hs.methods
    assert (close.reply_code, close.reply_text) == (530, f"NOT_ALLOWED - vhost {name} not found")
    assert (close.class_id, close.method_id) == (10, 40)  # connection.open
    assert hs.closed and not hs.opened

    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        pika_connect(virtual_host=name)
    assert f"(530) 'NOT_ALLOWED - vhost {name} not found'" in str(info.value)


def test_open_vhost_without_permissions(broker, vhost, user, connect_as):
    hs = raw_handshake(broker, user.name, user.password, vhost=vhost, capabilities=AFC)
    close = hs.close
    assert close is not None, hs.methods
    assert (close.reply_code, close.class_id, close.method_id) == (530, 10, 40)
    assert close.reply_text == f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user.name}'"
    assert hs.closed and not hs.opened

    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as info:
        connect_as(user, vhost)
    assert "(530)" in str(info.value)
    assert f"access to vhost '{vhost}' refused for user '{user.name}'" in str(info.value)


def test_empty_patterns_still_open_the_vhost(mgmt, vhost, user, connect_as):
    """A permission entry with three empty patterns grants the vhost but no resource."""
    mgmt.set_permissions(vhost, user.name, "", "", "")
    conn = connect_as(user, vhost)
    for op, kind, name in [
        (lambda ch: ch.queue_declare("q"), "queue", "q"),
        (lambda ch: ch.exchange_declare("x", "fanout"), "exchange", "x"),
        (lambda ch: ch.basic_publish("amq.fanout", "", b"m"), "exchange", "amq.fanout"),
        (lambda ch: ch.basic_publish("", "", b"m"), "exchange", "amq.default"),
        (lambda ch: ch.basic_get("nothing"), "queue", "nothing"),
    ]:
        assert attempt(conn.channel(), op) == (403, refused(kind, name, vhost, user.name))
    assert conn.is_open
    # passive declares need no permission at all
    ch = conn.channel()
    ch.exchange_declare("amq.direct", "direct", passive=True)


def test_delete_vhost_closes_its_connections(mgmt, vhost_factory, user, connect_as, broker):
    doomed, other = vhost_factory(".doomed"), vhost_factory(".other")
    mgmt.set_permissions(doomed, user.name)
    mgmt.set_permissions(other, user.name)
    user_conn = connect_as(user, doomed)
    ch = user_conn.channel()
    ch.queue_declare("q")
    ch.basic_consume("q", lambda *a: None)
    admin_conn = connect_as(broker.user, doomed, broker.password)
    other_conn = connect_as(user, other)

    assert mgmt.delete(f"/api/vhosts/{q(doomed)}").status == 204
    # RabbitMQ closes them from two sides at once (the deletion, and the vhost's
    # supervisor going down), so either text may win the race; Warren: "is deleted"
    expected = {(320, f"CONNECTION_FORCED - vhost '{doomed}' is deleted"),
                (320, f"CONNECTION_FORCED - vhost '{doomed}' is down")}
    assert wait_closed_by_broker(user_conn) in expected
    assert wait_closed_by_broker(admin_conn) in expected
    assert stays_open(other_conn)
    other_conn.channel().queue_declare("still-works")

    # the vhost's permissions went with it; a new vhost of the same name is empty
    perms = mgmt.get(f"/api/users/{q(user.name)}/permissions").body
    assert [p["vhost"] for p in perms] == [other]
    mgmt.create_vhost(doomed)
    mgmt.set_permissions(doomed, broker.user)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect_as(user, doomed)
    ch = connect_as(broker.user, doomed, broker.password).channel()
    assert attempt(ch, lambda c: c.queue_declare("q", passive=True)) == \
        (404, f"NOT_FOUND - no queue 'q' in vhost '{doomed}'")


# --- users -------------------------------------------------------------------------

def test_login_with_password(mgmt, vhost, user, connect_as):
    mgmt.set_permissions(vhost, user.name)
    assert connect_as(user, vhost).is_open


@pytest.mark.parametrize("algorithm", [SHA256, None], ids=["sha256", "default-algorithm"])
def test_login_with_password_hash(mgmt, vhost, uid, connect_as, broker, algorithm):
    """password_hash = base64(salt4 + sha256(salt4 + utf8 password)); without
    hashing_algorithm RabbitMQ assumes sha256 (its default)."""
    name, password = f"{uid}.hashed", "pässwörd-✓"
    try:
        mgmt.create_user(name, password_hash=password_hash(password), hashing_algorithm=algorithm)
        mgmt.set_permissions(vhost, name)
        conn = connect_as(name, vhost, password)
        conn.channel().queue_declare("q")
        hs = raw_handshake(broker, name, password + "x", vhost=vhost, capabilities=AFC)
        assert (hs.close.reply_code, hs.close.reply_text) == (403, LOGIN_REFUSED)
    finally:
        mgmt.delete_user(name, missing_ok=True)


@pytest.mark.parametrize("who", ["wrong-password", "unknown-user"])
def test_login_refused(mgmt, vhost, user, broker, connect_as, who):
    mgmt.set_permissions(vhost, user.name)
    name, password = ((user.name, user.password + "x") if who == "wrong-password"
                      else (user.name + ".nobody", user.password))

    hs = raw_handshake(broker, name, password, vhost=vhost, capabilities=AFC)
    close = hs.close
    assert close is not None, hs.methods
    assert (close.reply_code, close.reply_text) == (403, LOGIN_REFUSED)
    assert (close.class_id, close.method_id) == (0, 0)
    assert not any(isinstance(m, pika.spec.Connection.Tune) for m in hs.methods)
    assert hs.closed

    # without authentication_failure_close the broker just drops the socket
    for caps in (None, {"authentication_failure_close": False}):
        hs = raw_handshake(broker, name, password, vhost=vhost, capabilities=caps)
        assert hs.methods == [] and hs.closed

    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as info:
        connect_as(name, vhost, password)
    assert f"(403) '{LOGIN_REFUSED}'" in str(info.value)


def test_tags_do_not_matter_for_amqp(mgmt, vhost, user_factory, connect_as):
    for tags in ("", "management", "monitoring", "administrator", "policymaker,custom-tag"):
        u = user_factory(tags=tags)
        mgmt.set_permissions(vhost, u.name)
        assert connect_as(u, vhost).is_open


def test_delete_user_closes_its_connections(mgmt, vhost, user_factory, connect_as):
    doomed, other = user_factory(), user_factory()
    mgmt.set_permissions(vhost, doomed.name)
    mgmt.set_permissions(vhost, other.name)
    conns = [connect_as(doomed, vhost), connect_as(doomed, vhost)]
    conns[1].channel().queue_declare("q")
    other_conn = connect_as(other, vhost)

    assert mgmt.delete(f"/api/users/{q(doomed.name)}").status == 204
    for conn in conns:
        assert wait_closed_by_broker(conn) == (320, f"CONNECTION_FORCED - user '{doomed.name}' is deleted")
    assert stays_open(other_conn)

    # its permissions are gone: re-created under the same name it has none
    assert mgmt.get(f"/api/permissions/{q(vhost)}/{q(doomed.name)}").status == 404
    mgmt.create_user(doomed.name, doomed.password)
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect_as(doomed, vhost)


def test_password_change(mgmt, vhost, user, connect_as, broker):
    mgmt.set_permissions(vhost, user.name)
    old_conn = connect_as(user, vhost)
    old_ch = old_conn.channel()
    old_ch.queue_declare("q")

    assert mgmt.put(f"/api/users/{q(user.name)}", {"password": "new-password", "tags": ""}).status == 204

    # open connections are not affected
    assert stays_open(old_conn)
    old_ch.queue_declare("q")
    old_conn.channel().queue_declare("q2")
    # new logins need the new password
    hs = raw_handshake(broker, user.name, user.password, vhost=vhost, capabilities=AFC)
    assert (hs.close.reply_code, hs.close.reply_text) == (403, LOGIN_REFUSED)
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        connect_as(user, vhost)
    assert connect_as(user, vhost, password="new-password").is_open


def test_guest_from_loopback(broker, pika_connect, mgmt):
    """The suite's normal path: guest over 127.0.0.1 (the non-loopback refusal
    needs a network namespace and is tested elsewhere)."""
    if broker.user != "guest" or broker.host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("the broker under test is not reached as guest over loopback")
    conn = pika_connect()
    conn.channel().queue_declare("", exclusive=True)
    assert mgmt.get("/api/whoami").body == {"name": "guest", "tags": ["administrator"]}


# --- the permission table ----------------------------------------------------------
#
# Each case runs in a fresh vhost where the admin has created:
#   exchanges src (direct; q1 bound with key k), dst (fanout), x_del (direct)
#   queues q1 (one message), q_del
# The user connects with the case's (configure, write, read) patterns and runs
# one operation on a fresh channel.

ANY = ".*"
NONE = ""
GEN_NAME = re.compile(r"amq\.gen-[A-Za-z0-9_-]{22}")


@dataclass
class Case:
    id: str
    perms: tuple  # (configure, write, read)
    op: Callable
    # None: allowed; ("queue"/"exchange", name or GEN_NAME): refused naming that
    # resource; (code, text-template): another channel error
    expect: Optional[tuple] = None


def _consume(ch):
    ch.basic_consume("q1", lambda *a: None)


CASES = [
    # exchange.declare: configure on the exchange
    Case("exchange.declare", ("^x_new$", NONE, NONE), lambda ch: ch.exchange_declare("x_new", "direct")),
    Case("exchange.declare-refused", ("^other$", ANY, ANY),
         lambda ch: ch.exchange_declare("x_new", "direct"), ("exchange", "x_new")),
    Case("exchange.declare-existing-refused", ("^x_new$", ANY, ANY),
         lambda ch: ch.exchange_declare("src", "direct"), ("exchange", "src")),
    Case("exchange.declare-passive-needs-nothing", (NONE, NONE, NONE),
         lambda ch: ch.exchange_declare("src", "direct", passive=True)),
    Case("exchange.declare-passive-missing", (NONE, NONE, NONE),
         lambda ch: ch.exchange_declare("nope", "direct", passive=True),
         (404, "NOT_FOUND - no exchange 'nope' in vhost '{vhost}'")),
    # with an alternate exchange: + read on the exchange, + write on the AE
    Case("exchange.declare-ae", ("^x_ae$", "^dst$", "^x_ae$"),
         lambda ch: ch.exchange_declare("x_ae", "direct", arguments={"alternate-exchange": "dst"})),
    Case("exchange.declare-ae-no-read", (ANY, ANY, NONE),
         lambda ch: ch.exchange_declare("x_ae", "direct", arguments={"alternate-exchange": "dst"}),
         ("exchange", "x_ae")),
    Case("exchange.declare-ae-no-write", (ANY, NONE, ANY),
         lambda ch: ch.exchange_declare("x_ae", "direct", arguments={"alternate-exchange": "dst"}),
         ("exchange", "dst")),
    Case("exchange.declare-ae-read-checked-before-write", (ANY, NONE, NONE),
         lambda ch: ch.exchange_declare("x_ae", "direct", arguments={"alternate-exchange": "dst"}),
         ("exchange", "x_ae")),
    # exchange.delete: configure on the exchange, checked before existence
    Case("exchange.delete", ("^x_del$", NONE, NONE), lambda ch: ch.exchange_delete("x_del")),
    Case("exchange.delete-refused", ("^other$", ANY, ANY), lambda ch: ch.exchange_delete("x_del"),
         ("exchange", "x_del")),
    Case("exchange.delete-missing-refused", (NONE, ANY, ANY), lambda ch: ch.exchange_delete("nope"),
         ("exchange", "nope")),
    Case("exchange.delete-missing", (ANY, NONE, NONE), lambda ch: ch.exchange_delete("nope")),
    # queue.declare: configure on the queue
    Case("queue.declare", ("^q_new$", NONE, NONE), lambda ch: ch.queue_declare("q_new")),
    Case("queue.declare-refused", ("^other$", ANY, ANY), lambda ch: ch.queue_declare("q_new"),
         ("queue", "q_new")),
    Case("queue.declare-existing-refused", ("^q_new$", ANY, ANY), lambda ch: ch.queue_declare("q1"),
         ("queue", "q1")),
    Case("queue.declare-passive-needs-nothing", (NONE, NONE, NONE),
         lambda ch: ch.queue_declare("q1", passive=True)),
    Case("queue.declare-passive-missing", (NONE, NONE, NONE),
         lambda ch: ch.queue_declare("nope", passive=True),
         (404, "NOT_FOUND - no queue 'nope' in vhost '{vhost}'")),
    Case("queue.declare-server-named", (r"^amq\.gen-", NONE, NONE),
         lambda ch: ch.queue_declare("", exclusive=True)),
    Case("queue.declare-server-named-refused", ("^other$", ANY, ANY),
         lambda ch: ch.queue_declare("", exclusive=True), ("queue", GEN_NAME)),
    # with x-dead-letter-exchange: + read on the queue, + write on the DLX
    Case("queue.declare-dlx", ("^q_dlx$", "^src$", "^q_dlx$"),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": "src"})),
    Case("queue.declare-dlx-no-read", (ANY, ANY, NONE),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": "src"}),
         ("queue", "q_dlx")),
    Case("queue.declare-dlx-no-write", (ANY, NONE, ANY),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": "src"}),
         ("exchange", "src")),
    Case("queue.declare-dlx-read-checked-before-write", (ANY, NONE, NONE),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": "src"}),
         ("queue", "q_dlx")),
    Case("queue.declare-dlx-missing-exchange-allowed", (ANY, ANY, ANY),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": "nope"})),
    Case("queue.declare-dlx-default-exchange-is-amq.default", (ANY, "^q", ANY),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": ""}),
         ("exchange", "amq.default")),
    Case("queue.declare-dlx-default-exchange", (ANY, r"^amq\.default$", ANY),
         lambda ch: ch.queue_declare("q_dlx", arguments={"x-dead-letter-exchange": ""})),
    # queue.delete: configure on the queue, checked before existence
    Case("queue.delete", ("^q_del$", NONE, NONE), lambda ch: ch.queue_delete("q_del")),
    Case("queue.delete-refused", ("^other$", ANY, ANY), lambda ch: ch.queue_delete("q_del"),
         ("queue", "q_del")),
    Case("queue.delete-missing-refused", (NONE, ANY, ANY), lambda ch: ch.queue_delete("nope"),
         ("queue", "nope")),
    Case("queue.delete-missing", (ANY, NONE, NONE), lambda ch: ch.queue_delete("nope")),
    # queue.bind / queue.unbind: write on the queue, read on the exchange
    Case("queue.bind", (NONE, "^q1$", "^src$"), lambda ch: ch.queue_bind("q1", "src", "k2")),
    Case("queue.bind-no-write", (ANY, NONE, ANY), lambda ch: ch.queue_bind("q1", "src", "k2"),
         ("queue", "q1")),
    Case("queue.bind-no-read", (ANY, ANY, NONE), lambda ch: ch.queue_bind("q1", "src", "k2"),
         ("exchange", "src")),
    Case("queue.bind-queue-checked-first", (ANY, NONE, NONE), lambda ch: ch.queue_bind("q1", "src", "k2"),
         ("queue", "q1")),
    Case("queue.bind-missing-exchange-refused", (ANY, ANY, NONE), lambda ch: ch.queue_bind("q1", "nope", "k"),
         ("exchange", "nope")),
    Case("queue.bind-default-exchange", (ANY, ANY, ANY), lambda ch: ch.queue_bind("q1", "", "k"),
         (403, "ACCESS_REFUSED - operation not permitted on the default exchange")),
    Case("queue.unbind", (NONE, "^q1$", "^src$"), lambda ch: ch.queue_unbind("q1", "src", "k")),
    Case("queue.unbind-no-write", (ANY, NONE, ANY), lambda ch: ch.queue_unbind("q1", "src", "k"),
         ("queue", "q1")),
    Case("queue.unbind-no-read", (ANY, ANY, NONE), lambda ch: ch.queue_unbind("q1", "src", "k"),
         ("exchange", "src")),
    # exchange.bind / exchange.unbind: write on the destination, read on the source
    Case("exchange.bind", (NONE, "^dst$", "^src$"), lambda ch: ch.exchange_bind("dst", "src", "k")),
    Case("exchange.bind-no-write", (ANY, NONE, ANY), lambda ch: ch.exchange_bind("dst", "src", "k"),
         ("exchange", "dst")),
    Case("exchange.bind-no-read", (ANY, ANY, NONE), lambda ch: ch.exchange_bind("dst", "src", "k"),
         ("exchange", "src")),
    Case("exchange.bind-destination-checked-first", (ANY, NONE, NONE),
         lambda ch: ch.exchange_bind("dst", "src", "k"), ("exchange", "dst")),
    Case("exchange.unbind", (NONE, "^dst$", "^src$"), lambda ch: ch.exchange_unbind("dst", "src", "k")),
    Case("exchange.unbind-no-write", (ANY, NONE, ANY), lambda ch: ch.exchange_unbind("dst", "src", "k"),
         ("exchange", "dst")),
    Case("exchange.unbind-no-read", (ANY, ANY, NONE), lambda ch: ch.exchange_unbind("dst", "src", "k"),
         ("exchange", "src")),
    # basic.publish: write on the exchange; the default exchange is 'amq.default'
    Case("basic.publish", (NONE, "^src$", NONE), lambda ch: ch.basic_publish("src", "k", b"m")),
    Case("basic.publish-refused", (ANY, "^other$", ANY), lambda ch: ch.basic_publish("src", "k", b"m"),
         ("exchange", "src")),
    Case("basic.publish-default-exchange", (NONE, r"^amq\.default$", NONE),
         lambda ch: ch.basic_publish("", "q1", b"m")),
    Case("basic.publish-default-exchange-not-by-queue-name", (ANY, "^q1$", ANY),
         lambda ch: ch.basic_publish("", "q1", b"m"), ("exchange", "amq.default")),
    Case("basic.publish-default-exchange-empty-pattern", (ANY, NONE, ANY),
         lambda ch: ch.basic_publish("", "q1", b"m"), ("exchange", "amq.default")),
    Case("basic.publish-amq.default-by-name-is-missing", (ANY, ANY, ANY),
         lambda ch: ch.basic_publish("amq.default", "q1", b"m"),
         (404, "NOT_FOUND - no exchange 'amq.default' in vhost '{vhost}'")),
    Case("basic.publish-missing-exchange-refused", (ANY, NONE, ANY),
         lambda ch: ch.basic_publish("nope", "k", b"m"), ("exchange", "nope")),
    Case("basic.publish-missing-exchange", (NONE, ANY, NONE),
         lambda ch: ch.basic_publish("nope", "k", b"m"),
         (404, "NOT_FOUND - no exchange 'nope' in vhost '{vhost}'")),
    # basic.get / basic.consume / queue.purge: read on the queue
    Case("basic.get", (NONE, NONE, "^q1$"), lambda ch: ch.basic_get("q1", auto_ack=True)),
    Case("basic.get-refused", (ANY, ANY, NONE), lambda ch: ch.basic_get("q1", auto_ack=True),
         ("queue", "q1")),
    Case("basic.get-missing-queue-refused", (ANY, ANY, NONE), lambda ch: ch.basic_get("nope"),
         ("queue", "nope")),
    Case("basic.get-missing-queue", (NONE, NONE, ANY), lambda ch: ch.basic_get("nope"),
         (404, "NOT_FOUND - no queue 'nope' in vhost '{vhost}'")),
    Case("basic.consume", (NONE, NONE, "^q1$"), _consume),
    Case("basic.consume-refused", (ANY, ANY, NONE), _consume, ("queue", "q1")),
    Case("queue.purge", (NONE, NONE, "^q1$"), lambda ch: ch.queue_purge("q1")),
    Case("queue.purge-refused", (ANY, ANY, NONE), lambda ch: ch.queue_purge("q1"), ("queue", "q1")),
    # patterns are unanchored searches
    Case("pattern-unanchored", ("_ne", NONE, NONE), lambda ch: ch.exchange_declare("x_new", "direct")),
    Case("pattern-anchored-start", ("^_ne", ANY, ANY), lambda ch: ch.exchange_declare("x_new", "direct"),
         ("exchange", "x_new")),
    Case("pattern-anchored-end", ("x_ne$", ANY, ANY), lambda ch: ch.exchange_declare("x_new", "direct"),
         ("exchange", "x_new")),
    Case("pattern-alternation", ("^(other|x_new)$", NONE, NONE),
         lambda ch: ch.exchange_declare("x_new", "direct")),
    Case("pattern-empty-denies", (NONE, ANY, ANY), lambda ch: ch.queue_declare("q_new"),
         ("queue", "q_new")),
]


@pytest.fixture
def acl_vhost(mgmt, vhost, connect_as, broker):
    """The vhost of the permission table, with its objects created by the admin."""
    conn = connect_as(broker.user, vhost, broker.password)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.exchange_declare("src", "direct")
    ch.exchange_declare("dst", "fanout")
    ch.exchange_declare("x_del", "direct")
    ch.queue_declare("q1")
    ch.queue_declare("q_del")
    ch.queue_bind("q1", "src", "k")
    ch.basic_publish("", "q1", b"m")
    conn.close()
    return vhost


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_permission_table(case, mgmt, acl_vhost, user, connect_as):
    vhost = acl_vhost
    configure, write, read = case.perms
    mgmt.set_permissions(vhost, user.name, configure, write, read)
    conn = connect_as(user, vhost)
    outcome = attempt(conn.channel(), case.op)
    if case.expect is None:
        assert outcome == "ok"
    elif isinstance(case.expect[0], int):
        code, text = case.expect
        assert outcome == (code, text.format(vhost=vhost, user=user.name))
    else:
        kind, name = case.expect
        assert outcome != "ok", f"expected a refusal naming {kind} {name}"
        code, text = outcome
        assert code == 403
        if isinstance(name, re.Pattern):
            pattern = re.escape(refused(kind, "NAME", vhost, user.name)).replace("NAME", name.pattern)
            assert re.fullmatch(pattern, text), text
        else:
            assert text == refused(kind, name, vhost, user.name)
    # a refusal closes only the channel
    assert conn.is_open
    conn.channel().queue_declare("q1", passive=True)


# --- permission changes on open connections -----------------------------------------

def test_revoked_permissions_keep_open_connections(mgmt, vhost, user, connect_as):
    mgmt.set_permissions(vhost, user.name)
    conn = connect_as(user, vhost)
    conn.channel().queue_declare("q")
    mgmt.clear_permissions(vhost, user.name)
    assert stays_open(conn)
    # channel.open still works; the first checked operation is refused
    ch = conn.channel()
    assert attempt(ch, lambda c: c.queue_declare("q")) == (403, refused("queue", "q", vhost, user.name))
    assert conn.is_open
    # new connections are refused
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect_as(user, vhost)


def test_revocation_and_the_channel_permission_cache(mgmt, vhost, user, connect_as):
    """A channel remembers the checks it has passed: after a revocation the same
    operation on the same resource still succeeds on that channel, anything
    else (and any other channel) is refused."""
    mgmt.set_permissions(vhost, user.name)
    conn = connect_as(user, vhost)
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("q")                       # configure q
    ch.exchange_declare("x", "fanout")          # configure x
    ch.basic_publish("", "q", b"1")             # write amq.default
    assert ch.basic_get("q", auto_ack=True)[2] == b"1"  # read q

    mgmt.set_permissions(vhost, user.name, "^nothing$", "^nothing$", "^nothing$")

    ch.queue_declare("q")
    ch.exchange_declare("x", "fanout")
    ch.basic_publish("", "q", b"2")
    assert ch.basic_get("q", auto_ack=True)[2] == b"2"
    # a new resource, or a new kind of access, on the same channel
    assert attempt(ch, lambda c: c.queue_declare("q2")) == (403, refused("queue", "q2", vhost, user.name))
    ch = conn.channel()
    ch.queue_declare("q", passive=True)  # needs no permission
    assert attempt(ch, lambda c: c.queue_declare("q")) == (403, refused("queue", "q", vhost, user.name))
    ch = conn.channel()
    assert attempt(ch, lambda c: c.basic_publish("", "q", b"3")) == \
        (403, refused("exchange", "amq.default", vhost, user.name))
    assert conn.is_open


def test_granted_permissions_apply_at_once(mgmt, vhost, user, connect_as):
    mgmt.set_permissions(vhost, user.name, NONE, NONE, NONE)
    conn = connect_as(user, vhost)
    ch = conn.channel()
    assert attempt(ch, lambda c: c.queue_declare("q")) == (403, refused("queue", "q", vhost, user.name))
    ch = conn.channel()
    mgmt.set_permissions(vhost, user.name)
    ch.queue_declare("q")  # a channel opened before the grant
    conn.channel().basic_publish("", "q", b"m")


# --- topic permissions -------------------------------------------------------------

@pytest.fixture
def topic_env(mgmt, vhost, user, connect_as, broker):
    """A vhost with topic exchange t (q bound with a.#), topic exchange t2, and
    direct/fanout/headers exchanges; the user has full normal permissions."""
    admin = connect_as(broker.user, vhost, broker.password).channel()
    for name, kind in [("t", "topic"), ("t2", "topic"), ("d", "direct"), ("f", "fanout"), ("h", "headers")]:
        admin.exchange_declare(name, kind)
    admin.queue_declare("q")
    admin.queue_bind("q", "t", "a.#")
    mgmt.set_permissions(vhost, user.name)

    class Env:
        pass

    env = Env()
    env.vhost, env.user, env.admin = vhost, user, admin

    def topic_perm(exchange, write, read):
        mgmt.set_topic_permissions(vhost, user.name, exchange, write, read)

    def run(op):
        conn = connect_as(user, vhost)
        out = attempt(conn.channel(), op)
        assert conn.is_open  # only the channel closes
        conn.close()
        return out

    def denied(key, exchange="t"):
        return (403, topic_refused(key, exchange, vhost, user.name))

    env.topic_perm, env.run, env.denied = topic_perm, run, denied
    return env


def test_topic_write_permission(topic_env):
    env = topic_env
    env.topic_perm("t", r"^a\.", r"^b\.")
    assert env.run(lambda ch: ch.basic_publish("t", "x.y", b"no")) == env.denied("x.y")
    assert env.run(lambda ch: ch.basic_publish("t", "za.y", b"no")) == env.denied("za.y")
    assert env.run(lambda ch: ch.basic_publish("t", "a.y", b"yes")) == "ok"
    # the allowed message was routed, the refused ones were not
    method, _p, body = env.admin.basic_get("q", auto_ack=True)
    assert body == b"yes"
    assert env.admin.basic_get("q", auto_ack=True)[0] is None


def test_topic_read_permission_on_bindings(topic_env):
    env = topic_env
    env.topic_perm("t", r"^a\.", r"^b\.")
    assert env.run(lambda ch: ch.queue_bind("q", "t", "x")) == env.denied("x")
    assert env.run(lambda ch: ch.queue_bind("q", "t", "b.1")) == "ok"
    assert env.run(lambda ch: ch.queue_unbind("q", "t", "x")) == env.denied("x")
    assert env.run(lambda ch: ch.queue_unbind("q", "t", "b.1")) == "ok"
    # exchange-to-exchange: checked (read) on a topic source, not on a topic destination
    assert env.run(lambda ch: ch.exchange_bind("f", "t", "x")) == env.denied("x")
    assert env.run(lambda ch: ch.exchange_bind("f", "t", "b.x")) == "ok"
    assert env.run(lambda ch: ch.exchange_unbind("f", "t", "x")) == env.denied("x")
    assert env.run(lambda ch: ch.exchange_bind("t", "d", "x")) == "ok"
    # consuming is not a topic operation
    assert env.run(lambda ch: ch.basic_consume("q", lambda *a: None)) == "ok"


def test_topic_patterns(topic_env):
    env = topic_env
    env.topic_perm("t", "mid", "")
    assert env.run(lambda ch: ch.basic_publish("t", "x.mid.y", b"m")) == "ok"  # unanchored
    assert env.run(lambda ch: ch.basic_publish("t", "x.y", b"m")) == env.denied("x.y")
    # an empty pattern allows only the empty routing key
    assert env.run(lambda ch: ch.queue_bind("q", "t", "x")) == env.denied("x")
    assert env.run(lambda ch: ch.queue_bind("q", "t", "")) == "ok"
    env.topic_perm("t", "", ".*")
    assert env.run(lambda ch: ch.basic_publish("t", "a", b"m")) == env.denied("a")
    assert env.run(lambda ch: ch.basic_publish("t", "", b"m")) == "ok"


def test_topic_variable_expansion(topic_env):
    env = topic_env
    user, vhost = env.user.name, env.vhost
    env.topic_perm("t", r"^{username}\.", r"^{vhost}\.")
    assert env.run(lambda ch: ch.basic_publish("t", f"{user}.x", b"m")) == "ok"
    assert env.run(lambda ch: ch.basic_publish("t", "other.x", b"m")) == env.denied("other.x")
    assert env.run(lambda ch: ch.basic_publish("t", f"{vhost}.x", b"m")) == env.denied(f"{vhost}.x")
    assert env.run(lambda ch: ch.queue_bind("q", "t", f"{vhost}.x")) == "ok"
    assert env.run(lambda ch: ch.queue_bind("q", "t", f"{user}.x")) == env.denied(f"{user}.x")


def test_topic_permissions_are_per_exchange(topic_env):
    env = topic_env
    env.topic_perm("t", "^a$", "^a$")
    # no entry for t2 (nor amq.topic): allowed
    assert env.run(lambda ch: ch.basic_publish("t2", "x.y", b"m")) == "ok"
    assert env.run(lambda ch: ch.queue_bind("q", "t2", "x.y")) == "ok"
    assert env.run(lambda ch: ch.basic_publish("amq.topic", "x.y", b"m")) == "ok"
    env.topic_perm("amq.topic", "^a$", "^a$")
    assert env.run(lambda ch: ch.basic_publish("amq.topic", "x.y", b"m")) == env.denied("x.y", "amq.topic")


def test_topic_permissions_ignore_other_exchange_types(topic_env):
    env = topic_env
    for name in ("d", "f", "h"):
        env.topic_perm(name, "^a$", "^a$")
    for name in ("d", "f", "h"):
        assert env.run(lambda ch: ch.basic_publish(name, "x.y", b"m")) == "ok"
        assert env.run(lambda ch: ch.queue_bind("q", name, "x.y")) == "ok"


def test_topic_check_after_the_normal_check(topic_env, mgmt):
    env = topic_env
    env.topic_perm("t", "^a$", "^a$")
    mgmt.set_permissions(env.vhost, env.user.name, ANY, "^other$", ANY)
    assert env.run(lambda ch: ch.basic_publish("t", "x.y", b"m")) == \
        (403, refused("exchange", "t", env.vhost, env.user.name))
