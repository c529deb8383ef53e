/**
 * Section "cloud check": one full run of the cloud checks (IMDSv2, then the EC2 worker process
 * with the real @aws-sdk/client-ec2, then the checks) against the loopback IMDS and EC2 servers,
 * from the built agent (dist/, plain node, as on the host).
 *
 * Measured in a fresh probe process, so that nothing else this benchmark loaded counts: its RSS
 * before importing the cloud module, after importing it, and after the checks, plus its peak RSS
 * (which would jump by ~100 MB had the SDK ever loaded in it); and per run the whole check,
 * the worker's wall time (spawn to exit) and the worker's own peak RSS and SDK import time.
 * For scale, the RSS of a process that imports the SDK and nothing else.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { FakeEc2, referenceWorld } from '../support/ec2-server.js';
import { FakeImds } from '../support/imds-server.js';
import type { BenchContext, BenchSection, SectionReport } from './section.js';
import { check, median, verdict, type BudgetCheck } from './stats.js';
import { mb, ms, type Table } from './table.js';

const RUNS = 5;
const WARMUP = 1;
const CHECK_BUDGET_MS = 3000;
/** The daemon's RSS may not grow by more than this over the checks (the SDK alone is ~100 MB). */
const PARENT_GROWTH_BUDGET_MB = 20;

interface ProbeSample {
  totalMs: number;
  imdsMs: number;
  workerWallMs: number;
  workerPeakRssKb: number;
  sdkImportMs: number;
  callsMs: number;
  errors: number;
}

interface ProbeResult {
  rssStartKb: number;
  rssAfterImportKb: number;
  rssAfterChecksKb: number;
  peakRssKb: number;
  samples: ProbeSample[];
}

/** The probe: an ES module run with `node --input-type=module -e`, parameters in PROBE_PARAMS. */
const PROBE = `
const p = JSON.parse(process.env.PROBE_PARAMS);
const kb = () => Math.round(process.memoryUsage().rss / 1024);
const rssStartKb = kb();
const { runCloudChecks } = await import(p.cloudUrl);
const { createLogger } = await import(p.logUrl);
const rssAfterImportKb = kb();
const log = createLogger('silent');
const samples = [];
for (let i = 0; i < p.warmup + p.runs; i++) {
  const t0 = performance.now();
  const r = await runCloudChecks({ desired: p.desired }, p.options, log);
  const totalMs = performance.now() - t0;
  if (r.status !== 'ok' || !r.ec2Worker) throw new Error('check did not run: ' + JSON.stringify(r.unavailable ?? r.findings));
  if (i < p.warmup) continue;
  samples.push({ totalMs, imdsMs: r.timings.imdsMs, workerWallMs: r.ec2Worker.wallMs, workerPeakRssKb: r.ec2Worker.peakRssKb,
    sdkImportMs: r.ec2Worker.sdkImportMs, callsMs: r.ec2Worker.callsMs, errors: r.counts.error + r.counts.warning });
}
process.stdout.write(JSON.stringify({ rssStartKb, rssAfterImportKb, rssAfterChecksKb: kb(), peakRssKb: process.resourceUsage().maxRSS, samples }) + '\\n');
`;

const SDK_ONLY = `await import('@aws-sdk/client-ec2'); process.stdout.write(String(process.resourceUsage().maxRSS) + '\\n');`;

async function node(args: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): Promise<string> {
  const child = spawn(process.execPath, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`node ${args.slice(0, 2).join(' ')} exited ${code}: ${err.trim().split('\n').slice(-5).join('\n')}`);
  return out.trim().split('\n').pop() ?? '';
}

function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && k !== 'NODE_OPTIONS') env[k] = v;
  env.AWS_CONFIG_FILE = '/nonexistent/pbx-agent-bench/config';
  env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/pbx-agent-bench/credentials';
  env.AWS_ACCESS_KEY_ID = 'AKIDBENCHLOOPBACK';
  env.AWS_SECRET_ACCESS_KEY = 'bench-secret';
  return env;
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const dist = path.join(ctx.projectRoot, 'dist/agent/cloud');
  for (const f of ['index.js', 'ec2-worker.js']) {
    if (!existsSync(path.join(dist, f))) throw new Error(`${path.join(dist, f)} is missing: run npm run build first`);
  }
  const imds = new FakeImds();
  const ec2 = new FakeEc2(referenceWorld('203.0.113.10'));
  await imds.start();
  await ec2.start();
  try {
    const env = cleanEnv();
    const params = {
      cloudUrl: pathToFileURL(path.join(dist, 'index.js')).href,
      logUrl: pathToFileURL(path.join(ctx.projectRoot, 'dist/agent/log.js')).href,
      warmup: WARMUP,
      runs: RUNS,
      desired: {
        externalAddress: { configured: '203.0.113.10' },
        localNets: ['172.31.0.0/16'],
        transports: [{ protocol: 'udp', port: 5060 }],
        rtp: { portStart: 10000, portEnd: 20000 },
        amiPort: 5038,
      },
      options: {
        settings: { enabled: true, eip_policy: 'alert', reminder_minutes: 60, imds_endpoint: imds.url, ec2_endpoint: ec2.url },
        imds: { timeoutMs: 1000, retries: 2 },
        ec2: { timeoutMs: 30_000 },
      },
    };
    ctx.log(`cloud-check: ${WARMUP} + ${RUNS} full checks in a probe process (dist/, plain node)`);
    const probe = JSON.parse(await node(['--input-type=module', '-e', PROBE], { cwd: ctx.projectRoot, env: { ...env, PROBE_PARAMS: JSON.stringify(params) } })) as ProbeResult;
    const bad = probe.samples.find((s) => s.errors > 0);
    if (bad) throw new Error('the reference world produced findings; the benchmark would measure the wrong thing');
    ctx.log('cloud-check: RSS of a process that only imports @aws-sdk/client-ec2');
    const sdkOnlyKb = Number(await node(['--input-type=module', '-e', SDK_ONLY], { cwd: ctx.projectRoot, env }));

    const med = (k: keyof ProbeSample) => median(probe.samples.map((s) => s[k]));
    const mib = (kb: number) => kb / 1024;
    const total = med('totalMs');
    const growth = mib(probe.rssAfterChecksKb - probe.rssAfterImportKb);
    const checks: BudgetCheck[] = [
      check({ what: 'one full cloud check (IMDS + EC2 worker spawn + checks), median', limit: CHECK_BUDGET_MS, unit: 'ms' }, total),
      check({ what: `daemon RSS growth over ${WARMUP + RUNS} cloud checks`, limit: PARENT_GROWTH_BUDGET_MB, unit: 'MB' }, growth),
    ];
    const timing: Table = {
      title: `One full cloud check against loopback IMDS + EC2 (median of ${RUNS} after ${WARMUP} warm-up), real SDK in the worker`,
      columns: [
        { header: 'total ms' },
        { header: 'IMDS ms' },
        { header: 'worker wall ms' },
        { header: 'SDK import ms' },
        { header: 'EC2 calls ms' },
        { header: 'worker peak RSS MB' },
        { header: 'budget ms' },
        { header: 'result', align: 'left' },
      ],
      rows: [[ms(total), ms(med('imdsMs')), ms(med('workerWallMs')), ms(med('sdkImportMs')), ms(med('callsMs')), mb(mib(med('workerPeakRssKb'))), `< ${CHECK_BUDGET_MS}`, verdict(checks[0]!)]],
      notes: [
        'total = runCloudChecks(): IMDSv2 token + facts, spawning the worker (node start-up, SDK import, DescribeAddresses + DescribeSecurityGroups), checks.',
        'worker peak RSS = process.resourceUsage().maxRSS reported by the worker itself.',
      ],
    };
    const memory: Table = {
      title: 'Memory of the process running the checks (the daemon), MB',
      columns: [
        { header: 'RSS at start' },
        { header: 'after import of agent/cloud' },
        { header: `after ${WARMUP + RUNS} checks` },
        { header: 'peak RSS' },
        { header: 'a process importing only the SDK' },
        { header: 'growth budget' },
        { header: 'result', align: 'left' },
      ],
      rows: [[mb(mib(probe.rssStartKb)), mb(mib(probe.rssAfterImportKb)), mb(mib(probe.rssAfterChecksKb)), mb(mib(probe.peakRssKb)), mb(mib(sdkOnlyKb)), `< ${PARENT_GROWTH_BUDGET_MB}`, verdict(checks[1]!)]],
      notes: ['The SDK lives only in the worker: the daemon never pays the ~100 MB a process importing it does.'],
    };
    return { tables: [timing, memory], checks };
  } finally {
    await imds.stop();
    await ec2.stop();
  }
}

export const cloudCheckSection: BenchSection = {
  id: 'cloud-check',
  name: 'cloud check (IMDS + EC2 worker)',
  run,
};
