/**
 * pbx-agent benchmarks: `npm run bench` (builds first), or `npm run bench -- SECTION_ID ...` to run
 * only some sections. Not run by CI. Prints one plain-text table per section and a budget summary;
 * exits 1 if any budget is exceeded, 2 if a section failed. A section that cannot run on this
 * machine (e.g. real-asterisk without root) says why and is counted as "not measured".
 *
 * To add a section: write a BenchSection (see section.ts, validate-render.ts) and list it below.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from './gen-repo.js';
import type { BenchSection } from './section.js';
import { verdict, type BudgetCheck } from './stats.js';
import { formatTable } from './table.js';
import { validateRenderSection } from './validate-render.js';
import { applyVerifySection } from './apply-verify.js';
import { daemonSection } from './daemon.js';
import { cloudCheckSection } from './cloud-check.js';
import { realAsteriskSection } from './real-asterisk.js';

/** Every section, in the order they run. */
const SECTIONS: BenchSection[] = [validateRenderSection, applyVerifySection, daemonSection, cloudCheckSection, realAsteriskSection];

async function main(argv: string[]): Promise<number> {
  const unknown = argv.filter((id) => !SECTIONS.some((s) => s.id === id));
  if (unknown.length > 0) {
    console.error(`unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.map((s) => s.id).join(', ')}`);
    return 2;
  }
  const selected = argv.length > 0 ? SECTIONS.filter((s) => argv.includes(s.id)) : SECTIONS;

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`pbx-agent benchmarks: node ${process.version}, ${os.platform()} ${os.arch()}, ${os.cpus().length} x ${cpu}`);

  const root = await mkdtemp(path.join(os.tmpdir(), 'pbx-agent-bench-'));
  // What sections asked to undo on an interrupt (a booted container), then the temp folder.
  const interruptCleanups = new Set<() => Promise<void>>();
  const cleanup = () => rm(root, { recursive: true, force: true });
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`[bench] ${signal}: cleaning up`);
    void Promise.allSettled([...interruptCleanups].map((f) => f()))
      .then(() => cleanup())
      .finally(() => process.kill(process.pid, signal));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const checks: BudgetCheck[] = [];
  const notMeasured: string[] = [];
  let failed = false;
  try {
    for (const [i, section] of selected.entries()) {
      console.log(`\n=== ${i + 1}. ${section.name} ===\n`);
      const tmpDir = await mkdtemp(path.join(root, `${section.id}-`));
      try {
        const report = await section.run({
          projectRoot: PROJECT_ROOT,
          tmpDir,
          log: (m) => console.error(`[bench] ${m}`),
          onInterrupt: (f) => {
            interruptCleanups.add(f);
            return () => interruptCleanups.delete(f);
          },
        });
        if (report.notMeasured !== undefined) {
          notMeasured.push(section.id);
          console.log(`not measured: ${report.notMeasured}`);
        }
        console.log(report.tables.map(formatTable).join('\n\n'));
        checks.push(...report.checks);
      } catch (e) {
        failed = true;
        console.log(`section failed: ${e instanceof Error ? e.message : String(e)}`);
        if (e instanceof Error && e.stack) console.error(e.stack);
      } finally {
        await rm(tmpDir, { recursive: true, force: true });
      }
    }
  } finally {
    await cleanup();
  }

  const over = checks.filter((c) => !c.pass);
  console.log('\n=== budgets ===\n');
  for (const c of checks) {
    console.log(`${verdict(c)}  ${c.what}: ${c.actual.toFixed(1)} ${c.unit} (budget < ${c.limit} ${c.unit})`);
  }
  console.log(
    `\n${checks.length - over.length}/${checks.length} budgets met` +
      (over.length ? `; ${over.length} OVER` : '') +
      (notMeasured.length ? `; not measured: ${notMeasured.join(', ')}` : '') +
      (failed ? '; a section failed to run' : ''),
  );
  if (failed) return 2;
  return over.length > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
