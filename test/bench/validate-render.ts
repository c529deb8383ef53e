/**
 * Section "validate + render": config repos of 100, 1,000 and 10,000 extensions, measured
 *   - in-process, in this long-lived process: read → load → resolve → render, per stage;
 *   - as a whole CLI process: `node dist/agent/cli/main.js render DIR --out OUT`, wall time and
 *     peak RSS, against a fresh output directory each run so that every file is written.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { formatIssue, hasErrors, loadDesiredState, readConfigRepo } from '../../agent/load/index.js';
import { renderConfigRepo } from '../../agent/pipeline.js';
import { DirectorySecretStore, type HostFacts } from '../../agent/resolve/index.js';
import { generateConfigRepo, type GeneratedRepo } from './gen-repo.js';
import type { BenchContext, BenchSection, SectionReport } from './section.js';
import { check, median, medianOf, repeat, runNode, verdict, type Budget, type BudgetCheck } from './stats.js';
import { count, mb, ms, us, type Table } from './table.js';

const SIZES = [100, 1_000, 10_000];
const RUNS = 5;
const WARMUP = 1;
const REVISION = 'bench';

/** Budgets are set for 10,000 extensions; smaller repos are held to the same ceiling. */
const IN_PROCESS_BUDGET_MS = 300;
const CLI_BUDGET_MS = 1500;

function benchHost(tmpDir: string): HostFacts {
  return {
    // The generated repos use md5 credentials only; no secret is ever read.
    secrets: new DirectorySecretStore(path.join(tmpDir, 'no-secrets')),
    elasticIp: async () => ({ problem: 'the benchmark repos use an explicit external_address' }),
  };
}

/** Throws unless the repo loads, resolves and renders with zero errors and every extension. */
async function assertValid(repo: GeneratedRepo, host: HostFacts): Promise<void> {
  const loaded = loadDesiredState(await readConfigRepo(repo.dir));
  const fail = (what: string, issues: typeof loaded.issues) => {
    const shown = issues.slice(0, 10).map((i) => `  ${formatIssue(i)}`);
    throw new Error(
      `generated repo with ${repo.extensions} extensions ${what}; benchmarking a failing validation is meaningless:\n${shown.join('\n')}` +
        (issues.length > 10 ? `\n  ... and ${issues.length - 10} more` : ''),
    );
  };
  if (hasErrors(loaded.issues) || !loaded.state) fail('does not validate', loaded.issues);
  if (loaded.issues.length > 0) fail('has warnings', loaded.issues);
  if (loaded.summary.extensions !== repo.extensions) {
    throw new Error(`generated repo: expected ${repo.extensions} enabled extensions, validation counted ${loaded.summary.extensions}`);
  }
  const outcome = await renderConfigRepo(repo.dir, host, REVISION);
  if (!outcome.files) fail('does not resolve/render', outcome.issues);
}

interface InProcessSample {
  read: number;
  load: number;
  resolveRender: number;
  total: number;
}

async function measureInProcess(repo: GeneratedRepo, host: HostFacts): Promise<InProcessSample> {
  const samples = await repeat(RUNS, WARMUP, async () => {
    const t0 = performance.now();
    const outcome = await renderConfigRepo(repo.dir, host, REVISION);
    const total = performance.now() - t0;
    if (!outcome.files) throw new Error(`render of ${repo.extensions} extensions failed during the benchmark`);
    const t = outcome.timings;
    return { read: t.read, load: t.load, resolveRender: t.resolve + t.render, total };
  });
  return medianOf(samples);
}

interface CliSample {
  wallMs: number;
  peakRssMb: number;
}

async function measureCli(ctx: BenchContext, args: (outDir: string) => string[]): Promise<CliSample> {
  const cli = path.join(ctx.projectRoot, 'dist/agent/cli/main.js');
  const rssFile = path.join(ctx.tmpDir, 'rss.txt');
  const outRoot = path.join(ctx.tmpDir, 'out');
  await mkdir(outRoot, { recursive: true });
  const runs = await repeat(RUNS, WARMUP, async () => {
    const outDir = await mkdtemp(path.join(outRoot, 'run-'));
    const run = await runNode([cli, ...args(outDir)], { cwd: ctx.projectRoot, rssFile });
    await rm(outDir, { recursive: true, force: true });
    if (run.code !== 0) {
      throw new Error(`pbx-agent ${args(outDir).join(' ')} exited with ${run.code}:\n${run.stderr || run.stdout}`);
    }
    return run;
  });
  return {
    wallMs: median(runs.map((r) => r.wallMs)),
    // The peak over all measured runs: the number a memory limit would have to allow.
    peakRssMb: Math.max(...runs.map((r) => r.peakRssMb)),
  };
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  if (!existsSync(path.join(ctx.projectRoot, 'dist/agent/cli/main.js'))) {
    throw new Error('dist/agent/cli/main.js is missing; run `npm run build` first (`npm run bench` does)');
  }
  const host = benchHost(ctx.tmpDir);
  const checks: BudgetCheck[] = [];

  // Start-up floor of a CLI process: node, the --import probe and every module of the CLI, no work.
  ctx.log('validate-render: CLI start-up baseline (pbx-agent --version)');
  const baseline = await measureCli(ctx, () => ['--version']);

  const inRows: string[][] = [];
  const cliRows: string[][] = [];
  let prevIn: number | undefined;
  let prevCli: number | undefined;
  cliRows.push(['0 (--version)', '', ms(baseline.wallMs), '', '', mb(baseline.peakRssMb), '', '']);

  for (const n of SIZES) {
    const repo = await generateConfigRepo(path.join(ctx.tmpDir, `repo-${n}`), n);
    ctx.log(`validate-render: ${count(n)} extensions (${repo.files} files, ${(repo.bytes / 1024).toFixed(0)} KiB): validating`);
    await assertValid(repo, host);

    ctx.log(`validate-render: ${count(n)} extensions: in-process`);
    const inp = await measureInProcess(repo, host);
    const inBudget: Budget = { what: `in-process validate+render, ${count(n)} extensions`, limit: IN_PROCESS_BUDGET_MS, unit: 'ms' };
    const inCheck = check(inBudget, inp.total);
    checks.push(inCheck);
    const inPerExt = (inp.total * 1000) / n;
    inRows.push([
      count(n),
      String(repo.files),
      (repo.bytes / 1024).toFixed(0),
      ms(inp.read),
      ms(inp.load),
      ms(inp.resolveRender),
      ms(inp.total),
      us(inPerExt),
      prevIn === undefined ? '' : `${(inPerExt / prevIn).toFixed(2)}x`,
      `< ${IN_PROCESS_BUDGET_MS}`,
      verdict(inCheck),
    ]);
    prevIn = inPerExt;

    ctx.log(`validate-render: ${count(n)} extensions: CLI process`);
    const cli = await measureCli(ctx, (out) => ['render', repo.dir, '--out', out, '--revision', REVISION]);
    const cliBudget: Budget = { what: `CLI render process, ${count(n)} extensions`, limit: CLI_BUDGET_MS, unit: 'ms' };
    const cliCheck = check(cliBudget, cli.wallMs);
    checks.push(cliCheck);
    // Per extension above the start-up floor, so that the fixed cost does not hide the growth.
    const cliPerExt = ((cli.wallMs - baseline.wallMs) * 1000) / n;
    cliRows.push([
      count(n),
      String(repo.files),
      ms(cli.wallMs),
      us(cliPerExt),
      prevCli === undefined ? '' : `${(cliPerExt / prevCli).toFixed(2)}x`,
      mb(cli.peakRssMb),
      `< ${CLI_BUDGET_MS}`,
      verdict(cliCheck),
    ]);
    prevCli = cliPerExt;
  }

  const inTable: Table = {
    title: `In-process (this process, median of ${RUNS} runs after ${WARMUP} warm-up)`,
    columns: [
      { header: 'extensions' },
      { header: 'files' },
      { header: 'YAML KiB' },
      { header: 'read ms' },
      { header: 'load ms' },
      { header: 'resolve+render ms' },
      { header: 'total ms' },
      { header: 'µs/ext' },
      { header: 'µs/ext vs prev' },
      { header: 'budget ms' },
      { header: 'result', align: 'left' },
    ],
    rows: inRows,
    notes: [
      'read = readConfigRepo, load = loadDesiredState (YAML parse, schema, cross-checks), resolve+render = the rest of renderConfigRepo.',
      'Each column is its own median, so the stages need not add up to total exactly. µs/ext vs prev: 1.00x = linear growth.',
    ],
  };
  const cliTable: Table = {
    title: `Whole CLI process: node dist/agent/cli/main.js render DIR --out NEW_DIR --revision ${REVISION} (median wall of ${RUNS} after ${WARMUP} warm-up)`,
    columns: [
      { header: 'extensions', align: 'left' },
      { header: 'files' },
      { header: 'wall ms' },
      { header: 'µs/ext above start-up' },
      { header: 'vs prev' },
      { header: 'peak RSS MB' },
      { header: 'budget ms' },
      { header: 'result', align: 'left' },
    ],
    rows: cliRows,
    notes: [
      '0 (--version) = start-up floor: node + every CLI module loaded, no work. µs/ext is measured above that floor.',
      'Peak RSS = max over the measured runs of process.resourceUsage().maxRSS, written at exit by the preloaded rss-probe.mjs (overhead negligible).',
    ],
  };
  return { tables: [inTable, cliTable], checks };
}

export const validateRenderSection: BenchSection = {
  id: 'validate-render',
  name: 'validate + render',
  run,
};
