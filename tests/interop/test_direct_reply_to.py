"""Direct reply-to (the `amq.rabbitmq.reply-to` pseudo queue), as RabbitMQ
does it: the RPC round trip, the per-channel reply token, the errors and
whether they close the channel or the connection (reply code and text byte
for byte), mandatory and confirmed replies, queue.declare of the pseudo queue
and of reply tokens, and the reply consumer's tag.

Every case was checked against RabbitMQ 3.10 (3.10.8, via
rabbitmq-as-warren.sh).  Mostly pika; the consumer tag cases use py-amqp
(kombu's transport: pika always invents a tag itself and rejects duplicate
tags client-side), and one round trip uses aio-pika.

Facts worth knowing (RabbitMQ 3.10):

* the server sees ``reply_to`` rewritten to ``amq.rabbitmq.reply-to.<token>``;
  the token is fixed per reply consumer (all requests of a channel share it,
  other channels get other tokens, a new reply consumer gets a new one);
* a reply is delivered as ``basic.deliver`` with the reply consumer's tag,
  exchange ``''``, routing key = the full ``amq.rabbitmq.reply-to.<token>``,
  redelivered false, and the channel's *next* delivery tag without using it
  up (the next delivery of that channel gets the same tag);
* routing a reply never counts as routed: a mandatory reply is delivered
  *and* returned with 312 NO_ROUTE, and a confirmed reply is acked; a reply to
  a dead or unknown token is dropped (returned NO_ROUTE if mandatory);
* ``queue.declare`` of ``amq.rabbitmq.reply-to`` (passive or not) always says
  message_count 0, consumer_count 1; of a live token (from any other channel)
  the same, with the token as queue name; of a dead/bogus token 404.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pika
import pika.exceptions
import pytest

REPLY_TO = "amq.rabbitmq.reply-to"
PREFIX = REPLY_TO + "."
TIMEOUT = 10

NO_CONSUMER = (406, "PRECONDITION_FAILED - fast reply consumer does not exist")
CANNOT_ACK = (406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
ALREADY_SET = (406, "PRECONDITION_FAILED - reply consumer already set")


def no_queue(name):
    return (404, f"NOT_FOUND - no queue '{name}' in vhost '/'")


def settle(ch):
    """Lets an asynchronous error (after a publish) arrive: the next
    synchronous method fails with it instead of succeeding."""
    time.sleep(0.2)
    ch.basic_qos(prefetch_count=1)


def pump(conn, until, timeout=TIMEOUT):
    """Processes I/O on a pika connection until ``until()`` is true."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        conn.process_data_events(0.05)


def get_one(ch, queue, timeout=TIMEOUT):
    """basic.get with auto-ack, polling until a message is there."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        assert time.monotonic() < deadline, f"no message arrived in {queue}"
        time.sleep(0.02)


def closed_with(raised):
    return (raised.value.reply_code, raised.value.reply_text)


class Rpc:
    """A requester channel consuming amq.rabbitmq.reply-to (auto-ack) and a
    server channel, on its own connection, owning the request queue."""

    def __init__(self, pika_connect, uid, consumer_tag=None):
        self.conn = pika_connect()
        self.ch = self.conn.channel()
        self.replies = []
        kwargs = {"consumer_tag": consumer_tag} if consumer_tag else {}
        self.tag = self.ch.basic_consume(
            REPLY_TO, lambda _c, m, p, b: self.replies.append((m, p, b)), auto_ack=True, **kwargs)
        self.server_conn = pika_connect()
        self.server = self.server_conn.channel()
        self.queue = self.server.queue_declare(f"{uid}.requests", exclusive=True).method.queue

    def request(self, body, correlation_id=None, ch=None):
        """Publishes a request; returns (properties, body) as the server got them."""
        (ch or self.ch).basic_publish(
            "", self.queue, body, pika.BasicProperties(reply_to=REPLY_TO, correlation_id=correlation_id))
        _, props, got = get_one(self.server, self.queue)
        return props, got

    def wait_replies(self, n):
        pump(self.conn, lambda: len(self.replies) >= n)
        return self.replies


# --- the round trip --------------------------------------------------------

def test_rpc_round_trip(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    props, body = rpc.request(b"what is 6*7?", correlation_id="corr-1")
    assert body == b"what is 6*7?"
    assert props.correlation_id == "corr-1"
    reply_to = props.reply_to
    assert reply_to.startswith(PREFIX)
    assert len(reply_to) > len(PREFIX)

    rpc.server.basic_publish("", reply_to, b"42", pika.BasicProperties(
        correlation_id=props.correlation_id, content_type="text/plain", headers={"n": 1}))
    [(method, rprops, rbody)] = rpc.wait_replies(1)
    assert method.consumer_tag == rpc.tag
    assert method.exchange == ""
    assert method.routing_key == reply_to
    assert method.redelivered is False
    assert method.delivery_tag == 1
    assert rbody == b"42"
    assert rprops.correlation_id == "corr-1"
    assert rprops.content_type == "text/plain"
    assert rprops.headers == {"n": 1}
    assert rprops.reply_to is None
    # nothing else arrives
    rpc.conn.process_data_events(0.3)
    assert len(rpc.replies) == 1


def test_replies_arrive_in_order_with_one_token_per_channel(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    first, _ = rpc.request(b"one", correlation_id="c1")
    second, _ = rpc.request(b"two", correlation_id="c2")
    # every request of the channel carries the same token
    assert first.reply_to == second.reply_to
    assert first.reply_to.startswith(PREFIX)
    for props in (first, second):
        rpc.server.basic_publish("", props.reply_to, b"re:" + props.correlation_id.encode(),
                                 pika.BasicProperties(correlation_id=props.correlation_id))
    replies = rpc.wait_replies(2)
    assert [(b, p.correlation_id) for _, p, b in replies] == [(b"re:c1", "c1"), (b"re:c2", "c2")]
    assert [m.routing_key for m, _, _ in replies] == [first.reply_to] * 2
    assert [m.consumer_tag for m, _, _ in replies] == [rpc.tag] * 2
    # a reply takes the channel's next delivery tag without using it up
    assert [m.delivery_tag for m, _, _ in replies] == [1, 1]


def test_reply_does_not_use_up_a_delivery_tag(pika_connect, uid):
    """The reply gets the tag the channel's next ordinary delivery will get too."""
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    own = rpc.ch.queue_declare(f"{uid}.own", exclusive=True).method.queue
    events = []
    rpc.ch.basic_consume(own, lambda _c, m, _p, b: events.append(("normal", m.delivery_tag, b)),
                         auto_ack=True)
    rpc.replies = events  # the reply consumer appends (method, props, body)
    for target, body in [(own, b"n1"), (reply_to, b"r1"), (own, b"n2"), (reply_to, b"r2")]:
        n = len(events)
        rpc.server.basic_publish("", target, body)
        pump(rpc.conn, lambda: len(events) > n)
    got = [e if isinstance(e[0], str) else ("reply", e[0].delivery_tag, e[2]) for e in events]
    assert got == [("normal", 1, b"n1"), ("reply", 2, b"r1"), ("normal", 2, b"n2"), ("reply", 3, b"r2")]


def test_each_channel_has_its_own_token(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    other_ch = rpc.conn.channel()
    other_replies = []
    other_ch.basic_consume(REPLY_TO, lambda _c, m, p, b: other_replies.append(b), auto_ack=True)
    mine = rpc.request(b"a")[0].reply_to
    theirs = rpc.request(b"b", ch=other_ch)[0].reply_to
    assert mine.startswith(PREFIX) and theirs.startswith(PREFIX)
    assert mine != theirs
    rpc.server.basic_publish("", theirs, b"for-other")
    rpc.server.basic_publish("", mine, b"for-me")
    rpc.wait_replies(1)
    pump(rpc.conn, lambda: other_replies)
    rpc.conn.process_data_events(0.2)
    assert [b for _, _, b in rpc.replies] == [b"for-me"]
    assert other_replies == [b"for-other"]


def test_confirmed_reply_is_acked(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    rpc.server.confirm_delivery()
    rpc.server.basic_publish("", reply_to, b"confirmed")  # raises on nack or return
    assert [b for _, _, b in rpc.wait_replies(1)] == [b"confirmed"]


def test_mandatory_reply_is_delivered_and_also_returned(pika_connect, uid):
    """RabbitMQ delivers the reply to the requester but does not count it as
    routed, so a mandatory reply also comes back as basic.return NO_ROUTE
    (before the confirm's basic.ack)."""
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    rpc.server.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        rpc.server.basic_publish("", reply_to, b"mandatory", mandatory=True)
    [returned] = raised.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("", reply_to)
    assert returned.body == b"mandatory"
    [(method, _, body)] = rpc.wait_replies(1)
    assert (method.routing_key, body) == (reply_to, b"mandatory")
    assert rpc.server.is_open


def test_mandatory_reply_without_confirms_is_returned(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    returns = []
    rpc.server.add_on_return_callback(
        lambda _c, m, _p, b: returns.append((m.reply_code, m.reply_text, m.exchange, m.routing_key, b)))
    rpc.server.basic_publish("", reply_to, b"m", mandatory=True)
    pump(rpc.server_conn, lambda: returns)
    assert returns == [(312, "NO_ROUTE", "", reply_to, b"m")]
    assert [b for _, _, b in rpc.wait_replies(1)] == [b"m"]


@pytest.mark.parametrize("gone", ["channel", "connection"])
def test_reply_after_requester_is_gone(pika_connect, uid, gone):
    """The reply is dropped without any error; the replying channel goes on."""
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    (rpc.ch if gone == "channel" else rpc.conn).close()
    server = rpc.server
    server.confirm_delivery()
    server.basic_publish("", reply_to, b"late")  # acked, not returned
    with pytest.raises(pika.exceptions.UnroutableError) as raised:
        server.basic_publish("", reply_to, b"late-mandatory", mandatory=True)
    [returned] = raised.value.messages
    assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
    assert (returned.method.exchange, returned.method.routing_key) == ("", reply_to)
    assert returned.body == b"late-mandatory"
    # the replying channel is still usable
    assert server.is_open
    server.basic_publish("", rpc.queue, b"still here")
    assert get_one(server, rpc.queue)[2] == b"still here"
    # the token is dead now
    ch = rpc.server_conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.queue_declare(reply_to, passive=True)
    assert closed_with(raised) == no_queue(reply_to)


def test_reply_to_unknown_token_is_dropped(pika_connect):
    conn = pika_connect()
    ch = conn.channel()
    ch.confirm_delivery()
    for key in [PREFIX + "bogus", REPLY_TO]:
        ch.basic_publish("", key, b"nobody")  # acked
        with pytest.raises(pika.exceptions.UnroutableError) as raised:
            ch.basic_publish("", key, b"nobody", mandatory=True)
        [returned] = raised.value.messages
        assert (returned.method.reply_code, returned.method.reply_text) == (312, "NO_ROUTE")
        assert returned.method.routing_key == key
    assert ch.is_open


# --- errors ------------------------------------------------------------------

def test_reply_consumer_must_be_auto_ack(pika_connect):
    conn = pika_connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert closed_with(raised) == CANNOT_ACK
    assert conn.is_open
    # exclusive is accepted (and ignored)
    assert conn.channel().basic_consume(REPLY_TO, lambda *a: None, auto_ack=True,
                                        exclusive=True, consumer_tag="x") == "x"


@pytest.mark.parametrize("auto_ack,expected", [(True, ALREADY_SET), (False, CANNOT_ACK)],
                         ids=["second-auto-ack", "second-manual-ack"])
def test_second_reply_consumer_on_a_channel(pika_connect, auto_ack, expected):
    conn = pika_connect()
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True, consumer_tag="first")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=auto_ack, consumer_tag="second")
    assert closed_with(raised) == expected
    assert conn.is_open
    # other channels may have their own reply consumer
    assert conn.channel().basic_consume(REPLY_TO, lambda *a: None, auto_ack=True,
                                        consumer_tag="first") == "first"


@pytest.mark.parametrize("sibling_consumes", [False, True], ids=["fresh-channel", "sibling-has-consumer"])
def test_publish_reply_to_without_reply_consumer(pika_connect, uid, sibling_consumes):
    conn = pika_connect()
    if sibling_consumes:
        # a reply consumer on another channel of the same connection does not count
        conn.channel().basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ch = conn.channel()
    queue = ch.queue_declare(f"{uid}.q", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=REPLY_TO))
        settle(ch)
    assert closed_with(raised) == NO_CONSUMER
    assert conn.is_open
    # the request was not enqueued
    assert conn.channel().queue_declare(queue, passive=True).method.message_count == 0


def test_publish_reply_to_with_confirms_without_reply_consumer(pika_connect):
    conn = pika_connect()
    ch = conn.channel()
    ch.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.basic_publish("", "no-such-queue", b"req", pika.BasicProperties(reply_to=REPLY_TO))
    assert closed_with(raised) == NO_CONSUMER
    assert conn.is_open


def test_missing_exchange_is_reported_before_missing_reply_consumer(pika_connect, uid):
    conn = pika_connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.basic_publish(f"{uid}.nox", "k", b"req", pika.BasicProperties(reply_to=REPLY_TO))
        settle(ch)
    assert closed_with(raised) == (404, f"NOT_FOUND - no exchange '{uid}.nox' in vhost '/'")


def test_other_reply_to_values_pass_unchanged(pika_connect, uid):
    """Only exactly 'amq.rabbitmq.reply-to' is rewritten (and needs a consumer)."""
    conn = pika_connect()
    ch = conn.channel()
    queue = ch.queue_declare(f"{uid}.q", exclusive=True).method.queue
    for value in [PREFIX + "x", "amq.rabbitmq.reply-tox", "AMQ.RABBITMQ.REPLY-TO"]:
        ch.basic_publish("", queue, b"req", pika.BasicProperties(reply_to=value))
        assert get_one(ch, queue)[1].reply_to == value


def test_cancel_reply_consumer(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    assert rpc.ch.basic_cancel(rpc.tag) == []  # cancel-ok, nothing pending
    assert rpc.ch.is_open
    # replies to the old token are dropped
    rpc.server.basic_publish("", reply_to, b"after cancel")
    rpc.conn.process_data_events(0.3)
    assert rpc.replies == []
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        rpc.ch.basic_publish("", rpc.queue, b"req2", pika.BasicProperties(reply_to=REPLY_TO))
        settle(rpc.ch)
    assert closed_with(raised) == NO_CONSUMER
    assert rpc.conn.is_open


def test_new_reply_consumer_gets_a_new_token(pika_connect, uid):
    rpc = Rpc(pika_connect, uid)
    old = rpc.request(b"req1")[0].reply_to
    rpc.ch.basic_cancel(rpc.tag)
    new_tag = rpc.ch.basic_consume(
        REPLY_TO, lambda _c, m, p, b: rpc.replies.append((m, p, b)), auto_ack=True)
    new = rpc.request(b"req2")[0].reply_to
    assert new.startswith(PREFIX)
    assert new != old
    rpc.server.basic_publish("", old, b"to-old")
    rpc.server.basic_publish("", new, b"to-new")
    rpc.wait_replies(1)
    rpc.conn.process_data_events(0.2)
    assert [(m.consumer_tag, m.routing_key, b) for m, _, b in rpc.replies] == [(new_tag, new, b"to-new")]
    ch = rpc.server_conn.channel()
    assert ch.queue_declare(new, passive=True).method.consumer_count == 1
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.queue_declare(old, passive=True)
    assert closed_with(raised) == no_queue(old)


# --- queue.declare and other queue methods --------------------------------

@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
@pytest.mark.parametrize("with_consumer", [False, True], ids=["no-consumer", "consumer"])
def test_declare_reply_to_pseudo_queue(pika_connect, passive, with_consumer):
    conn = pika_connect()
    ch = conn.channel()
    if with_consumer:
        ch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    ok = ch.queue_declare(REPLY_TO, passive=passive).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (REPLY_TO, 0, 1)
    assert ch.is_open


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
@pytest.mark.parametrize("where", ["other-connection", "sibling-channel"])
def test_declare_live_token(pika_connect, uid, passive, where):
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    ch = (rpc.server_conn if where == "other-connection" else rpc.conn).channel()
    ok = ch.queue_declare(reply_to, passive=passive).method
    assert (ok.queue, ok.message_count, ok.consumer_count) == (reply_to, 0, 1)
    # declaring created nothing: the token still works
    rpc.server.basic_publish("", reply_to, b"r")
    assert [b for _, _, b in rpc.wait_replies(1)] == [b"r"]


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
@pytest.mark.parametrize("name", [PREFIX + "bogus", PREFIX, "amq.rabbitmq.reply-tox"],
                         ids=["bogus-token", "empty-token", "longer-name"])
def test_declare_unknown_token(pika_connect, passive, name):
    """404, also without passive (not the 403 for the reserved 'amq.' prefix)."""
    conn = pika_connect()
    ch = conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.queue_declare(name, passive=passive)
    assert closed_with(raised) == no_queue(name)
    assert conn.is_open


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_declare_dead_token(pika_connect, uid, passive):
    rpc = Rpc(pika_connect, uid)
    reply_to = rpc.request(b"req")[0].reply_to
    rpc.ch.close()
    ch = rpc.server_conn.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        ch.queue_declare(reply_to, passive=passive)
    assert closed_with(raised) == no_queue(reply_to)
    assert rpc.server_conn.is_open


@pytest.mark.parametrize("op", ["get", "purge", "bind", "consume-token"])
def test_reply_to_is_no_real_queue(pika_connect, op):
    conn = pika_connect()
    ch = conn.channel()
    name = REPLY_TO
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as raised:
        if op == "get":
            ch.basic_get(REPLY_TO, auto_ack=True)
        elif op == "purge":
            ch.queue_purge(REPLY_TO)
        elif op == "bind":
            ch.queue_bind(REPLY_TO, "amq.direct", "k")
        else:
            name = PREFIX + "x"
            ch.basic_consume(name, lambda *a: None, auto_ack=True)
    assert closed_with(raised) == no_queue(name)
    assert conn.is_open


# --- the reply consumer's tag (py-amqp sends the tag it is given) ----------

@pytest.fixture
def amqp_connect(broker):
    import amqp

    conns = []

    def connect():
        conn = amqp.Connection(f"{broker.host}:{broker.port}", userid="guest", password="guest",
                               connect_timeout=TIMEOUT)
        conn.connect()
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        try:
            conn.close()
        except Exception:
            pass


def amqp_drain(conn, until, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for the broker"
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass


@pytest.mark.parametrize("given", ["", "my-reply-tag"], ids=["empty", "explicit"])
def test_reply_consumer_tag(amqp_connect, uid, given):
    import amqp

    conn = amqp_connect()
    ch = conn.channel()
    replies = []
    tag = ch.basic_consume(REPLY_TO, consumer_tag=given, no_ack=True, callback=replies.append)
    if given:
        assert tag == given
    else:
        assert re.fullmatch(r"amq\.ctag-[A-Za-z0-9_-]{22}", tag), tag
    server = amqp_connect().channel()
    queue = server.queue_declare(f"{uid}.requests", exclusive=True)[0]
    ch.basic_publish(amqp.Message(b"req", reply_to=REPLY_TO), exchange="", routing_key=queue)
    deadline = time.monotonic() + TIMEOUT
    while (request := server.basic_get(queue, no_ack=True)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    reply_to = request.properties["reply_to"]
    assert reply_to.startswith(PREFIX) and len(reply_to) > len(PREFIX)
    server.basic_publish(amqp.Message(b"reply"), exchange="", routing_key=reply_to)
    amqp_drain(conn, lambda: replies)
    [reply] = replies
    assert reply.body == b"reply"
    assert reply.delivery_info["consumer_tag"] == tag
    assert reply.delivery_info["routing_key"] == reply_to
    # cancel-ok echoes the tag
    assert ch.basic_cancel(tag) == tag


def test_second_reply_consumer_with_the_same_tag(amqp_connect):
    import amqp.exceptions

    conn = amqp_connect()
    ch = conn.channel()
    ch.basic_consume(REPLY_TO, consumer_tag="dup", no_ack=True, callback=lambda m: None)
    with pytest.raises(amqp.exceptions.PreconditionFailed) as raised:
        ch.basic_consume(REPLY_TO, consumer_tag="dup", no_ack=True, callback=lambda m: None)
    assert closed_with(raised) == ALREADY_SET
    assert conn.connected
    assert conn.channel().queue_declare("", exclusive=True)[0].startswith("amq.gen-")


def test_reply_consumer_reusing_a_consumer_tag_closes_the_connection(amqp_connect):
    import amqp.exceptions

    conn = amqp_connect()
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True)[0]
    ch.basic_consume(queue, consumer_tag="dup", callback=lambda m: None)
    with pytest.raises(amqp.exceptions.NotAllowed) as raised:
        ch.basic_consume(REPLY_TO, consumer_tag="dup", no_ack=True, callback=lambda m: None)
    assert closed_with(raised) == (530, "NOT_ALLOWED - attempt to reuse consumer tag 'dup'")
    assert not conn.connected


def test_ordinary_consumer_may_reuse_the_reply_consumer_tag(amqp_connect):
    """The reply consumer is not in the channel's consumer table: an ordinary
    consumer with the same tag is accepted."""
    conn = amqp_connect()
    ch = conn.channel()
    queue = ch.queue_declare("", exclusive=True)[0]
    ch.basic_consume(REPLY_TO, consumer_tag="dup", no_ack=True, callback=lambda m: None)
    assert ch.basic_consume(queue, consumer_tag="dup", callback=lambda m: None) == "dup"
    assert conn.connected and ch.is_open


# --- aio-pika ----------------------------------------------------------------

def test_aio_pika_direct_reply_to_round_trip(broker, uid):
    import aio_pika
    from aio_pika import Message

    async def main():
        async with await aio_pika.connect(broker.url, timeout=TIMEOUT) as client, \
                await aio_pika.connect(broker.url, timeout=TIMEOUT) as server_conn:
            server = await server_conn.channel()
            requests = await server.declare_queue(f"{uid}.requests", exclusive=True)

            async def serve(msg):
                async with msg.process():
                    seen.append(msg.reply_to)
                    await server.default_exchange.publish(
                        Message(b"re:" + msg.body, correlation_id=msg.correlation_id),
                        routing_key=msg.reply_to)

            seen = []
            await requests.consume(serve)

            ch = await client.channel()
            reply_queue = await ch.declare_queue(REPLY_TO, passive=True)
            assert (reply_queue.declaration_result.message_count,
                    reply_queue.declaration_result.consumer_count) == (0, 1)
            replies = asyncio.Queue()
            tag = await reply_queue.consume(replies.put, no_ack=True)
            for i in range(2):
                await ch.default_exchange.publish(
                    Message(b"q%d" % i, reply_to=REPLY_TO, correlation_id=f"c{i}"),
                    routing_key=requests.name)
            got = [await asyncio.wait_for(replies.get(), TIMEOUT) for _ in range(2)]
            return tag, seen, [(m.body, m.correlation_id, m.consumer_tag, m.exchange,
                                m.routing_key, m.redelivered) for m in got]

    tag, seen, got = asyncio.run(asyncio.wait_for(main(), timeout=60))
    assert len(seen) == 2 and seen[0] == seen[1]
    assert seen[0].startswith(PREFIX) and len(seen[0]) > len(PREFIX)
    assert got == [(b"re:q0", "c0", tag, "", seen[0], False),
                   (b"re:q1", "c1", tag, "", seen[0], False)]
