'use strict';
// amqplib (promise API) against the broker under test.
// Run with: AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ node --test tests/interop/node/

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const amqp = require('amqplib');

const URL = process.env.AMQP_URL;
const T = { timeout: 20000 };

if (!URL) {
  throw new Error('AMQP_URL must point at the broker under test');
}

let conn;
const cleanupQueues = [];
const cleanupExchanges = [];

function uid(name) {
  return `interop.node.${name}.${crypto.randomBytes(4).toString('hex')}`;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Collects `n` messages from a queue via basic.consume.
async function collect(ch, queue, n, { noAck = true, ms = 10000 } = {}) {
  const got = [];
  let consumerTag;
  await withTimeout(
    new Promise((resolve, reject) => {
      ch.consume(queue, (msg) => {
        if (msg === null) return reject(new Error('consumer cancelled by broker'));
        got.push(msg);
        if (got.length === n) resolve();
      }, { noAck }).then((ok) => { consumerTag = ok.consumerTag; }, reject);
    }),
    ms,
    `${n} messages from ${queue}`,
  );
  if (consumerTag) await ch.cancel(consumerTag);
  return got;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  conn = await amqp.connect(URL);
});

after(async () => {
  if (!conn) return;
  const ch = await conn.createChannel();
  for (const q of cleanupQueues) await ch.deleteQueue(q).catch(() => {});
  for (const e of cleanupExchanges) await ch.deleteExchange(e).catch(() => {});
  await conn.close();
});

test('assertQueue reports name and counts', T, async () => {
  const ch = await conn.createChannel();
  const q = uid('assert');
  cleanupQueues.push(q);
  const ok = await ch.assertQueue(q, { durable: true });
  assert.equal(ok.queue, q);
  assert.equal(ok.messageCount, 0);
  assert.equal(ok.consumerCount, 0);

  const server = await ch.assertQueue('', { exclusive: true });
  assert.match(server.queue, /^amq\.gen-/);
  const check = await ch.checkQueue(q);
  assert.equal(check.queue, q);
  await ch.close();
});

test('sendToQueue / consume round trip with properties', T, async () => {
  const ch = await conn.createChannel();
  const q = uid('roundtrip');
  cleanupQueues.push(q);
  await ch.assertQueue(q);
  const body = Buffer.from(JSON.stringify({ hello: 'wörld' }));
  assert.ok(ch.sendToQueue(q, body, {
    contentType: 'application/json',
    headers: { 'x-n': 7, 'x-s': 'str' },
    correlationId: 'corr-node',
    replyTo: 'reply.node',
    persistent: true,
    messageId: 'm-1',
  }));
  const [msg] = await collect(ch, q, 1);
  assert.deepEqual(msg.content, body);
  assert.equal(msg.fields.routingKey, q);
  assert.equal(msg.fields.exchange, '');
  assert.equal(msg.fields.redelivered, false);
  assert.equal(msg.properties.contentType, 'application/json');
  assert.equal(msg.properties.correlationId, 'corr-node');
  assert.equal(msg.properties.replyTo, 'reply.node');
  assert.equal(msg.properties.deliveryMode, 2);
  assert.equal(msg.properties.messageId, 'm-1');
  assert.deepEqual(msg.properties.headers, { 'x-n': 7, 'x-s': 'str' });
  await ch.close();
});

test('confirm channel acks every publish', T, async () => {
  const ch = await conn.createConfirmChannel();
  const q = uid('confirm');
  cleanupQueues.push(q);
  await ch.assertQueue(q);
  const acks = [];
  for (let i = 0; i < 25; i++) {
    acks.push(new Promise((resolve, reject) => {
      ch.sendToQueue(q, Buffer.from(`c${i}`), { persistent: true },
        (err) => (err ? reject(err) : resolve()));
    }));
  }
  await withTimeout(Promise.all(acks), 10000, 'publisher confirms');
  await ch.waitForConfirms();
  const ok = await ch.checkQueue(q);
  assert.equal(ok.messageCount, 25);
  await ch.close();
});

test('mandatory publish to an unroutable key is returned', T, async () => {
  const ch = await conn.createConfirmChannel();
  const returned = new Promise((resolve) => ch.once('return', resolve));
  const key = uid('nowhere');
  ch.publish('', key, Buffer.from('bounce'), { mandatory: true });
  const msg = await withTimeout(returned, 10000, 'basic.return');
  assert.equal(msg.fields.replyCode, 312);
  assert.equal(msg.fields.replyText, 'NO_ROUTE');
  assert.equal(msg.fields.routingKey, key);
  assert.equal(msg.content.toString(), 'bounce');
  await ch.waitForConfirms();
  await ch.close();
});

test('topic exchange routing with * and #', T, async () => {
  const ch = await conn.createConfirmChannel();
  const ex = uid('topic');
  cleanupExchanges.push(ex);
  await ch.assertExchange(ex, 'topic', { durable: false });
  const bindings = { star: 'a.*.c', hash: 'a.#', exact: 'a.b.c', any: '#' };
  const queues = {};
  for (const [name, pattern] of Object.entries(bindings)) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(queue, ex, pattern);
    queues[name] = queue;
  }
  const keys = ['a.b.c', 'a.x.c', 'a', 'a.b.c.d', 'b.c'];
  for (const k of keys) ch.publish(ex, k, Buffer.from(k));
  await ch.waitForConfirms();

  const expected = {
    star: ['a.b.c', 'a.x.c'],
    hash: ['a.b.c', 'a.x.c', 'a', 'a.b.c.d'],
    exact: ['a.b.c'],
    any: keys,
  };
  for (const [name, queue] of Object.entries(queues)) {
    const got = [];
    for (;;) {
      const m = await ch.get(queue, { noAck: true });
      if (m === false) break;
      got.push(m.content.toString());
    }
    assert.deepEqual(got, expected[name], `binding ${bindings[name]}`);
  }
  await ch.close();
});

test('prefetch limits unacked deliveries', T, async () => {
  const ch = await conn.createChannel();
  const q = uid('prefetch');
  cleanupQueues.push(q);
  await ch.assertQueue(q);
  for (let i = 0; i < 6; i++) ch.sendToQueue(q, Buffer.from(String(i)));
  await ch.prefetch(2);
  const got = [];
  await ch.consume(q, (msg) => got.push(msg), { noAck: false });
  await withTimeout((async () => { while (got.length < 2) await sleep(20); })(), 10000, 'first deliveries');
  await sleep(300);
  assert.equal(got.length, 2, 'broker exceeded prefetch 2');
  ch.ack(got[0]);
  await withTimeout((async () => { while (got.length < 3) await sleep(20); })(), 10000, 'delivery after ack');
  await sleep(300);
  assert.equal(got.length, 3);
  // ack everything as it arrives until drained
  await withTimeout((async () => {
    let acked = 1;
    while (acked < 6) {
      if (got.length > acked) {
        ch.ack(got[got.length - 1], true);
        acked = got.length;
      }
      await sleep(20);
    }
  })(), 10000, 'drain with prefetch');
  assert.deepEqual(got.map((m) => Number(m.content.toString())), [0, 1, 2, 3, 4, 5]);
  await ch.close();
});

test('nack with requeue redelivers with redelivered=true', T, async () => {
  const ch = await conn.createChannel();
  const q = uid('nack');
  cleanupQueues.push(q);
  await ch.assertQueue(q);
  ch.sendToQueue(q, Buffer.from('again'));
  const seen = [];
  await withTimeout(new Promise((resolve, reject) => {
    ch.consume(q, (msg) => {
      seen.push({ redelivered: msg.fields.redelivered, body: msg.content.toString() });
      if (seen.length === 1) {
        ch.nack(msg, false, true);
      } else {
        ch.ack(msg);
        resolve();
      }
    }).catch(reject);
  }), 10000, 'redelivery after nack');
  assert.deepEqual(seen, [
    { redelivered: false, body: 'again' },
    { redelivered: true, body: 'again' },
  ]);
  await ch.close();
});

test('checkQueue on a missing queue closes the channel with 404', T, async () => {
  const ch = await conn.createChannel();
  const closed = new Promise((resolve) => ch.once('close', resolve));
  ch.on('error', () => {});
  const q = uid('missing');
  await assert.rejects(ch.checkQueue(q), (err) => {
    assert.equal(err.code, 404);
    assert.match(err.message, new RegExp(`NOT_FOUND - no queue '${q.replace(/\./g, '\\.')}' in vhost '/'`));
    return true;
  });
  await withTimeout(closed, 5000, 'channel close');
  // the connection survives
  const ch2 = await conn.createChannel();
  await ch2.assertQueue('', { exclusive: true });
  await ch2.close();
});

test('large message round trip (2 MiB)', T, async () => {
  const ch = await conn.createConfirmChannel();
  const q = uid('large');
  cleanupQueues.push(q);
  await ch.assertQueue(q);
  const body = crypto.randomBytes(2 * 1024 * 1024 + 17);
  ch.sendToQueue(q, body);
  await ch.waitForConfirms();
  const [msg] = await collect(ch, q, 1);
  assert.equal(msg.content.length, body.length);
  assert.ok(msg.content.equals(body), 'body differs');
  await ch.close();
});
