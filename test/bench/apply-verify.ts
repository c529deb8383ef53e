/**
 * Section 2: one extension changes in a config repo of 1,000 / 10,000 extensions that is already
 * live; time the whole reconcile (render, plan, preflight, apply, reload, verify, record) against
 * the loopback FakeAsterisk through the real AMI adapter. Budget: under 1 s at 10,000.
 */
import { readFile, writeFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { reconcile } from '../../agent/reconcile.js';
import { startPbxHost } from '../support/pbx-host.js';
import { generateConfigRepo } from './gen-repo.js';
import type { BenchContext, BenchSection, SectionReport } from './section.js';
import { check, median, verdict, type BudgetCheck } from './stats.js';
import { count, ms, type Table } from './table.js';

const SIZES = [1000, 10000];
const RUNS = 5;
const BUDGET_MS = 1000;
const STAGES = ['render', 'plan', 'preflight', 'apply', 'reload', 'verify'] as const;

async function run(ctx: BenchContext): Promise<SectionReport> {
  const rows: string[][] = [];
  const checks: BudgetCheck[] = [];
  for (const n of SIZES) {
    const host = await startPbxHost();
    try {
      const base = path.join(ctx.tmpDir, `repo-${n}`);
      await generateConfigRepo(base, n);
      ctx.log(`apply-verify: initial apply of ${count(n)} extensions`);
      const t0 = performance.now();
      const first = await reconcile(host.deps({ reloadTimeoutMs: 60_000 }), { dir: base, revision: 'initial' });
      const initialMs = performance.now() - t0;
      if (first.status !== 'applied') throw new Error(`initial apply of ${n} extensions: ${first.status}: ${first.error}`);

      // Each run changes one extension (its max_contacts) in one file: a fresh copy of the repo.
      const totals: number[] = [];
      const stages: Record<string, number[]> = Object.fromEntries(STAGES.map((s) => [s, []]));
      let details = 0;
      let commands = 0;
      for (let i = 0; i < RUNS + 1; i++) {
        const dir = path.join(ctx.tmpDir, `repo-${n}-change-${i}`);
        await cp(base, dir, { recursive: true });
        const file = path.join(dir, 'extensions/000-sales.yaml');
        const text = await readFile(file, 'utf8');
        await writeFile(file, text.replace('    name: User 10001\n', `    name: User 10001\n    max_contacts: ${2 + (i % 2) * 2}\n`));
        const start = performance.now();
        const out = await reconcile(host.deps({ reloadTimeoutMs: 60_000 }), { dir, revision: `change-${i}` });
        const total = performance.now() - start;
        if (out.status !== 'applied' || out.extensions.changed.join() !== '10001') {
          throw new Error(`one-change reconcile at ${n}: ${out.status} ${out.error ?? ''} changed=${out.extensions.changed.join(',')}`);
        }
        if (i === 0) continue; // warm-up
        totals.push(total);
        for (const s of STAGES) stages[s]!.push(out.stages[s] ?? 0);
        details = out.verification?.checked.endpointDetails ?? 0;
        commands = out.verification?.checked.commands ?? 0;
      }
      const total = median(totals);
      const c = check({ what: `one-change plan+apply+reload+verify, ${count(n)} extensions`, limit: BUDGET_MS, unit: 'ms' }, total);
      checks.push(c);
      rows.push([
        count(n),
        ms(initialMs),
        ...STAGES.map((s) => ms(median(stages[s]!))),
        ms(total),
        `${details} / ${commands}`,
        `< ${BUDGET_MS}`,
        verdict(c),
      ]);
    } finally {
      await host.stop();
    }
  }
  const table: Table = {
    title: `One extension changed in a live PBX (median of ${RUNS} after 1 warm-up), against the loopback FakeAsterisk`,
    columns: [
      { header: 'extensions' },
      { header: 'initial apply ms' },
      ...STAGES.map((s) => ({ header: `${s} ms` })),
      { header: 'total ms' },
      { header: 'details / cmds' },
      { header: 'budget ms' },
      { header: 'result', align: 'left' },
    ],
    rows,
    notes: [
      'total = the whole reconcile() call; stages are its own timings. reload includes FakeAsterisk re-parsing pjsip.conf in this process.',
      'details / cmds = PJSIPShowEndpoint reads and CLI commands used by verification: one per changed endpoint, none per unchanged one.',
    ],
  };
  return { tables: [table], checks };
}

export const applyVerifySection: BenchSection = {
  id: 'apply-verify',
  name: 'plan + apply + reload + verify',
  run,
};
