"""AMQPS: Warren's TLS listener (``--amqps-port``, ``--tls-cert``,
``--tls-key``) with certificates made by ``openssl`` in the test.

pika connects over TLS and runs the article's round trip; the management
API reports the connection as TLS; a plain AMQP client on the TLS port, a
client that does not trust the broker's CA and a client offering only TLS
1.1 are all refused, and the broker keeps serving everyone else."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import warnings

import pika
import pytest

import brokerctl
from mgmt import Mgmt

pytestmark = pytest.mark.timeout(120)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.pem"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate it signed for localhost/127.0.0.1, and
    another CA that signed nothing of the broker's."""
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem",
            cwd=d)
    return {"dir": d, "ca": ca, "other_ca": other_ca,
            "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture
def tls_broker(broker_factory, certs):
    port = brokerctl.free_port()
    proc = broker_factory.start(extra_args=(
        "--amqps-port", str(port), "--tls-cert", str(certs["cert"]),
        "--tls-key", str(certs["key"])))
    deadline = time.monotonic() + 10
    while not brokerctl.port_accepts("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, port


def tls_params(port, ca, **ctx_options):
    ctx = ssl.create_default_context(cafile=str(ca))
    for k, v in ctx_options.items():
        setattr(ctx, k, v)
    return pika.ConnectionParameters(
        host="127.0.0.1", port=port, credentials=pika.PlainCredentials("guest", "guest"),
        ssl_options=pika.SSLOptions(ctx, server_hostname="localhost"),
        connection_attempts=1, socket_timeout=5, blocked_connection_timeout=10)


def test_pika_runs_the_article_over_tls(tls_broker, certs):
    proc, port = tls_broker
    conn = pika.BlockingConnection(tls_params(port, certs["ca"]))
    ch = conn.channel()
    ch.queue_declare(queue="hello")
    body = json.dumps({"hello": "world"})
    ch.basic_publish(exchange="", routing_key="hello", body=body)
    got = []

    def callback(c, method, properties, b):
        got.append(b)
        c.stop_consuming()

    ch.basic_consume(queue="hello", on_message_callback=callback, auto_ack=True)
    conn.call_later(10, ch.stop_consuming)
    ch.start_consuming()
    assert got == [body.encode()]

    api = Mgmt(proc.mgmt_url, "guest", "guest")
    status, listed = api.get("/api/connections")
    assert status == 200
    assert [(c["ssl"], c["ssl_protocol"]) for c in listed] == [(True, "tlsv1.3")], listed
    conn.close()

    # The plain listener still serves plain clients.
    plain = pika.BlockingConnection(pika.URLParameters(proc.url))
    assert plain.channel().queue_declare("hello", passive=True).method.message_count == 0
    status, listed = api.get("/api/connections")
    assert [c["ssl"] for c in listed] == [False]
    plain.close()


def test_node_amqplib_over_tls(tls_broker, certs):
    proc, port = tls_broker
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (the interop suite needs Node.js >= 18)", pytrace=False)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, AMQPS_URL=f"amqps://guest:guest@localhost:{port}/",
               TLS_CA=str(certs["ca"]), OTHER_CA=str(certs["other_ca"]))
    run = subprocess.run([node, "node-tls/amqplib-tls.js"], cwd=here, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "amqplib over TLS: ok" in run.stdout


def test_a_plain_client_on_the_tls_port_is_refused(tls_broker, certs):
    proc, port = tls_broker
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=port, connection_attempts=1, socket_timeout=5))
    # A raw AMQP protocol header gets no AMQP reply, only the close.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        data = s.recv(4096)
        assert not data.startswith(b"AMQP") and b"\x01\x00\x00" not in data[:3]
    # Others are not affected.
    conn = pika.BlockingConnection(tls_params(port, certs["ca"]))
    conn.channel().queue_declare("after-plain")
    conn.close()


def test_a_client_that_does_not_trust_the_ca_refuses_the_broker(tls_broker, certs):
    proc, port = tls_broker
    with pytest.raises(ssl.SSLCertVerificationError):  # pika lets it through as it is
        pika.BlockingConnection(tls_params(port, certs["other_ca"]))
    ctx = ssl.create_default_context(cafile=str(certs["other_ca"]))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="localhost")
    conn = pika.BlockingConnection(tls_params(port, certs["ca"]))
    conn.close()


def test_tls_1_1_is_refused(tls_broker, certs):
    """Only TLS 1.2 and 1.3: a client offering at most 1.1 (allowed on its
    side with security level 0) gets the broker's alert."""
    proc, port = tls_broker
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(certs["ca"]))
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # deprecated versions, on purpose
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError):
        pytest.skip("this Python's OpenSSL cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError) as err:
            ctx.wrap_socket(raw, server_hostname="localhost")
    # The broker's alert (rustls answers a hello without 1.2 or 1.3 with
    # handshake_failure), not a failure on the client's side.
    assert "ALERT" in str(err.value).upper(), err.value
    conn = pika.BlockingConnection(tls_params(port, certs["ca"], maximum_version=ssl.TLSVersion.TLSv1_2))
    conn.close()


def test_a_stalled_tls_handshake_does_not_hold_up_others(tls_broker, certs):
    proc, port = tls_broker
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
    try:
        conn = pika.BlockingConnection(tls_params(port, certs["ca"]))
        conn.channel().queue_declare("while-stalled")
        conn.close()
    finally:
        for s in idle:
            s.close()


def test_the_broker_refuses_to_start_with_a_bad_certificate(broker_factory, certs, tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    with pytest.raises(brokerctl.BrokerStartError) as err:
        broker_factory.start(extra_args=("--amqps-port", str(brokerctl.free_port()),
                                         "--tls-cert", str(bogus), "--tls-key", str(certs["key"])))
    assert "AMQPS" in str(err.value) or "certificate" in str(err.value)
    with pytest.raises(brokerctl.BrokerStartError) as err:
        broker_factory.start(extra_args=("--tls-cert", str(certs["cert"])))
    assert "--tls-key" in str(err.value)
