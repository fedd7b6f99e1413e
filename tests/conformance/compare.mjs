// Compare a vitest JSON report with the committed list of known failures.
// Exit 0 only if the failures are exactly the listed ones.
import { readFileSync, existsSync } from "node:fs";

const [report, listFile] = process.argv.slice(2);
if (!existsSync(report)) {
  console.log("conformance: no results (the suite did not run)");
  process.exit(1);
}
const r = JSON.parse(readFileSync(report, "utf8"));
const failed = new Set();
let passed = 0, total = 0, skipped = 0;
for (const file of r.testResults) {
  for (const t of file.assertionResults) {
    total++;
    const name = [...t.ancestorTitles, t.title].join(" > ");
    if (t.status === "passed") passed++;
    else if (t.status === "failed") failed.add(name);
    else skipped++;
  }
}
const known = new Set(
  (existsSync(listFile) ? readFileSync(listFile, "utf8") : "")
    .split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")),
);
const fresh = [...failed].filter((n) => !known.has(n));
const stale = [...known].filter((n) => !failed.has(n));
for (const n of fresh) console.log(`NEW FAILURE: ${n}`);
for (const n of stale) console.log(`NOW PASSING (remove from ${listFile}): ${n}`);
console.log(`conformance: ${passed}/${total} passed, ${failed.size} failed (${known.size} known), ${skipped} skipped`);
process.exit(fresh.length || stale.length || total === 0 ? 1 : 0);
