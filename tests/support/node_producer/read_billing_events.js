// Reads the `billing-events` queue with a Node BullMQ Worker, as the product's backend does,
// and prints each job it processed as a JSON line {"id", "name", "data"}. Exits once no job has
// arrived for `idleMs` (the queue is drained), or after `timeoutMs` whatever happens.
// Usage: node read_billing_events.js '<json>' where json is
//   {"redisUrl": "redis://127.0.0.1:6379/15", "idleMs": 1000, "timeoutMs": 20000}
'use strict';

const { Worker } = require('bullmq');
const IORedis = require('ioredis');

async function main() {
  const { redisUrl, idleMs = 1000, timeoutMs = 20000 } = JSON.parse(process.argv[2]);
  const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  let last = Date.now();
  const worker = new Worker(
    'billing-events',
    async (job) => {
      process.stdout.write(JSON.stringify({ id: job.id, name: job.name, data: job.data }) + '\n');
      last = Date.now();
    },
    { connection, concurrency: 1 },
  );
  const started = Date.now();
  try {
    await worker.waitUntilReady();
    last = Date.now();
    while (Date.now() - last < idleMs && Date.now() - started < timeoutMs) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await worker.close();
    connection.disconnect();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
