// Preloaded with `node --import file:///.../rss-probe.mjs` into a benchmarked child process.
// On exit it writes the process's peak resident set size (process.resourceUsage().maxRSS, KiB)
// to the file named by PBX_BENCH_RSS_FILE. Cost: one synchronous write at exit, nothing before.
import { writeFileSync } from 'node:fs';

const file = process.env.PBX_BENCH_RSS_FILE;
if (file) {
  process.on('exit', () => {
    writeFileSync(file, `${process.resourceUsage().maxRSS}\n`);
  });
}
