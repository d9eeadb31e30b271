// The Express floor: the same Express stack and body handling as the gateway, answering every
// POST / with a fixed response of the gateway's GenerateDataKey size. Run by bench/run.ts.
const express = require('express');
const body = Buffer.from(JSON.stringify({ CiphertextBlob: 'A'.repeat(132), Plaintext: 'B'.repeat(44), KeyId: `arn:verenc:111122223333:key/${'0'.repeat(36)}`, KeyMaterialId: 'c'.repeat(64) }));
const app = express();
app.disable('x-powered-by');
app.disable('etag');
app.post('/', express.raw({ type: () => true, limit: 262144 }), (_req, res) => {
  res.status(200).setHeader('Content-Type', 'application/x-amz-json-1.1');
  res.end(body);
});
const server = app.listen(Number(process.argv[2]), '127.0.0.1', () => process.send && process.send('ready'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
