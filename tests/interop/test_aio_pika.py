"""aio-pika (asyncio, aiormq underneath) against the broker under test."""

from __future__ import annotations

import asyncio

import aio_pika
import aio_pika.exceptions
import pytest
from aio_pika import DeliveryMode, ExchangeType, Message
from pamqp.commands import Basic

TIMEOUT = 10


def run(coro):
    """Run a coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def connect(broker):
    return await aio_pika.connect(broker.url, timeout=TIMEOUT)


def test_publish_consume_round_trip(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            queue = await ch.declare_queue(uid, auto_delete=True)
            await ch.default_exchange.publish(
                Message(b"async hello", content_type="text/plain",
                        headers={"k": "v", "n": 1}, correlation_id="c-1",
                        delivery_mode=DeliveryMode.PERSISTENT),
                routing_key=uid,
            )
            async with queue.iterator(timeout=TIMEOUT) as it:
                async for msg in it:
                    async with msg.process():
                        return (msg.body, msg.content_type, msg.headers, msg.correlation_id,
                                msg.delivery_mode, msg.redelivered, msg.routing_key)

    body, ctype, headers, corr, mode, redelivered, rk = run(main())
    assert body == b"async hello"
    assert ctype == "text/plain"
    assert headers == {"k": "v", "n": 1}
    assert corr == "c-1"
    assert mode == DeliveryMode.PERSISTENT
    assert redelivered is False
    assert rk == uid


def test_publisher_confirms_and_unroutable(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            # on_return_raises: a basic.return for a mandatory publish fails the publish
            ch = await conn.channel(publisher_confirms=True, on_return_raises=True)
            queue = await ch.declare_queue(uid, auto_delete=True)
            confirmations = [
                await ch.default_exchange.publish(Message(f"m{i}".encode()), routing_key=uid)
                for i in range(10)
            ]
            declared = await ch.declare_queue(uid, passive=True)
            count = declared.declaration_result.message_count

            with pytest.raises(aio_pika.exceptions.DeliveryError) as exc:
                await ch.default_exchange.publish(
                    Message(b"nowhere"), routing_key=f"{uid}.missing", mandatory=True)
            returned = exc.value.message
            await queue.purge()
            await queue.delete(if_unused=False, if_empty=False)
            return confirmations, count, returned

    confirmations, count, returned = run(main())
    assert all(isinstance(c, Basic.Ack) for c in confirmations), confirmations
    assert count == 10
    assert returned is not None and returned.body == b"nowhere"


def test_topic_exchange(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            ex = await ch.declare_exchange(f"{uid}.logs", ExchangeType.TOPIC, auto_delete=True)
            q_errors = await ch.declare_queue(exclusive=True)
            q_kern = await ch.declare_queue(exclusive=True)
            await q_errors.bind(ex, routing_key="*.error")
            await q_kern.bind(ex, routing_key="kern.#")
            for key in ("kern.error", "app.error", "kern.info.disk", "app.info"):
                await ex.publish(Message(key.encode()), routing_key=key)

            async def drain(q, n):
                got = []
                async with q.iterator(timeout=TIMEOUT) as it:
                    async for msg in it:
                        await msg.ack()
                        got.append(msg.body.decode())
                        if len(got) == n:
                            break
                return got

            errors = await drain(q_errors, 2)
            kern = await drain(q_kern, 2)
            # nothing else arrives
            extra = await q_errors.get(fail=False), await q_kern.get(fail=False)
            await ex.delete()
            return errors, kern, extra

    errors, kern, extra = run(main())
    assert errors == ["kern.error", "app.error"]
    assert kern == ["kern.error", "kern.info.disk"]
    assert extra == (None, None)


def test_nack_requeue_and_get(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            queue = await ch.declare_queue(uid, auto_delete=False)
            try:
                await ch.default_exchange.publish(Message(b"again"), routing_key=uid)
                first = await queue.get(timeout=TIMEOUT)
                await first.nack(requeue=True)
                second = await queue.get(timeout=TIMEOUT)
                await second.ack()
                return first.redelivered, second.redelivered, second.body
            finally:
                await queue.delete(if_unused=False, if_empty=False)

    first, second, body = run(main())
    assert (first, second, body) == (False, True, b"again")


def test_rpc_pattern(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            server_ch = await conn.channel()
            client_ch = await conn.channel()
            rpc_q = await server_ch.declare_queue(f"{uid}.rpc", auto_delete=True)

            async def on_request(msg: aio_pika.abc.AbstractIncomingMessage):
                async with msg.process():
                    await server_ch.default_exchange.publish(
                        Message(msg.body.upper(), correlation_id=msg.correlation_id),
                        routing_key=msg.reply_to)

            await rpc_q.consume(on_request)
            reply_q = await client_ch.declare_queue(exclusive=True)
            assert reply_q.name.startswith("amq.gen-")
            loop = asyncio.get_running_loop()
            fut = loop.create_future()

            async def on_reply(msg):
                await msg.ack()
                if not fut.done():
                    fut.set_result((msg.correlation_id, msg.body))

            await reply_q.consume(on_reply)
            await client_ch.default_exchange.publish(
                Message(b"shout", reply_to=reply_q.name, correlation_id="rpc-1"),
                routing_key=rpc_q.name)
            return await asyncio.wait_for(fut, TIMEOUT)

    assert run(main()) == ("rpc-1", b"SHOUT")


def test_channel_close_on_missing_queue(broker, uid):
    async def main():
        conn = await connect(broker)
        async with conn:
            ch = await conn.channel()
            with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity) as exc:
                await ch.declare_queue(f"{uid}.missing", passive=True)
            # a new channel on the same connection still works
            ch2 = await conn.channel()
            q = await ch2.declare_queue(exclusive=True)
            return str(exc.value), q.name

    text, name = run(main())
    assert text == f"NOT_FOUND - no queue '{uid}.missing' in vhost '/'"
    assert name.startswith("amq.gen-")
