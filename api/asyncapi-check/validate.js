// Validates an AsyncAPI document with the AsyncAPI project's own parser (@asyncapi/parser),
// the library behind the AsyncAPI CLI and Studio. Exit 0 when the document is valid and has no
// warnings, 1 otherwise, with every diagnostic on stderr. Run by the api package's Go test.
'use strict';
const fs = require('fs');
const { Parser } = require('@asyncapi/parser');

const severities = ['error', 'warning', 'info', 'hint'];

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node validate.js FILE');
    process.exit(2);
  }
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, 'utf8'), { source: file });
  let bad = 0;
  for (const d of diagnostics) {
    const level = severities[d.severity] || String(d.severity);
    if (d.severity <= 1) bad++;
    console.error(`${level}: ${d.code}: ${d.message} at ${(d.path || []).join('.')}`);
  }
  if (!document || bad > 0) {
    console.error(`${file}: ${bad} error(s) or warning(s)`);
    process.exit(1);
  }
  const channels = document.channels().all().map((c) => c.address());
  const messages = document.messages().all().map((m) => m.name());
  console.log(JSON.stringify({ asyncapi: document.version(), channels, messages }));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
