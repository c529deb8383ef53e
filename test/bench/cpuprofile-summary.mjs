// Summarises a V8 .cpuprofile (from `node --cpu-prof`): the functions with the most self time,
// and the inclusive ("total") time of every function, recursion counted once.
//   node test/bench/cpuprofile-summary.mjs FILE.cpuprofile [TOP=25] [FILTER_REGEX_FOR_TOTALS]
import { readFileSync } from 'node:fs';

const [file, topArg, filterArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node cpuprofile-summary.mjs FILE.cpuprofile [TOP] [FILTER]');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const filter = filterArg ? new RegExp(filterArg) : undefined;
const profile = JSON.parse(readFileSync(file, 'utf8'));

const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const key = (n) => {
  const cf = n.callFrame;
  const where = cf.url.replace(/^file:\/\/\/.*?node_modules\//, '').replace(/^file:\/\/\/.*?\/(agent|schemas|test)\//, '$1/');
  return `${cf.functionName || '(anonymous)'} ${where ? `${where}:${cf.lineNumber + 1}` : ''}`.trim();
};

const selfUs = new Map();
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}
let totalUs = 0;
const selfByKey = new Map();
const totalByKey = new Map();
for (const [id, us] of selfUs) {
  totalUs += us;
  const k = key(nodes.get(id));
  selfByKey.set(k, (selfByKey.get(k) ?? 0) + us);
  // Inclusive: credit every distinct function on the stack once.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const ck = key(nodes.get(cur));
    if (seen.has(ck)) continue;
    seen.add(ck);
    totalByKey.set(ck, (totalByKey.get(ck) ?? 0) + us);
  }
}

const row = (us, k) => `${(us / 1000).toFixed(1).padStart(9)} ms ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${k}`;
console.log(`${file}: ${(totalUs / 1000).toFixed(0)} ms sampled\n\nself time, top ${top}:`);
for (const [k, us] of [...selfByKey].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(row(us, k));
console.log(`\ntotal (inclusive) time, top ${top}${filter ? ` matching ${filter}` : ''}:`);
for (const [k, us] of [...totalByKey]
  .filter(([k]) => !filter || filter.test(k))
  .sort((a, b) => b[1] - a[1])
  .slice(0, top)) {
  console.log(row(us, k));
}
