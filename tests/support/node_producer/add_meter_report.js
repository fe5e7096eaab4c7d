// Adds one `meter:report` job to the `meter-reporting` queue with Node BullMQ, the way the
// TypeScript backend (the seed plan) does: `queue.add(JobNames.METER_REPORT, data, options)`.
// Usage: node add_meter_report.js '<json>' where json is
//   {"redisUrl": "redis://127.0.0.1:6379/15", "data": {...}, "options": {...}}
// Prints {"id": ..., "timestamp": ...} of the job it added.
'use strict';

const { Queue } = require('bullmq');
const IORedis = require('ioredis');

async function main() {
  const { redisUrl, data, options } = JSON.parse(process.argv[2]);
  const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue('meter-reporting', { connection });
  try {
    const job = await queue.add('meter:report', data, options);
    process.stdout.write(JSON.stringify({ id: job.id, timestamp: job.timestamp }) + '\n');
  } finally {
    await queue.close();
    connection.disconnect();
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
