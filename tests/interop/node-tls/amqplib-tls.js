'use strict';
// amqplib over AMQPS: run by test_tls.py with AMQPS_URL (amqps://...) and
// TLS_CA (the PEM of the CA that signed the broker's certificate).
// Exits non-zero on any failure.

const fs = require('node:fs');
const assert = require('node:assert/strict');
const amqp = require('amqplib');

async function main() {
  const url = process.env.AMQPS_URL;
  const ca = fs.readFileSync(process.env.TLS_CA);
  const conn = await amqp.connect(url, { ca: [ca], servername: 'localhost' });
  const ch = await conn.createChannel();
  const q = `interop.node-tls.${process.pid}`;
  await ch.assertQueue(q, { exclusive: true });
  const body = Buffer.from(JSON.stringify({ over: 'tls' }));
  ch.sendToQueue(q, body);
  let msg = false;
  for (let i = 0; i < 100 && !msg; i++) {
    msg = await ch.get(q, { noAck: true });
    if (!msg) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(msg, 'no message came back');
  assert.deepEqual(msg.content, body);
  await ch.close();
  await conn.close();

  // A CA that did not sign the broker's certificate is refused by the client.
  let refused = null;
  try {
    const other = fs.readFileSync(process.env.OTHER_CA);
    const c = await amqp.connect(url, { ca: [other], servername: 'localhost' });
    await c.close();
  } catch (err) {
    refused = err;
  }
  assert.ok(refused, 'connected although the CA does not match');
  console.log('amqplib over TLS: ok');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
