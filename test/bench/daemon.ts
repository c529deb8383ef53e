/**
 * Section 3: the daemon as a real child process against a real git daemon and the loopback
 * Asterisk, started as the systemd unit starts it (its node flags and environment, dist/):
 * push-to-verified latency through the webhook and the cost of a no-op scheduled run on the Node.js
 * line the bootstrap installs by default, and the daemon's steady-state memory after 100 runs on
 * every supported Node.js line (official binaries, test/support/node-lines.ts).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { StateStore } from '../../agent/record/state.js';
import { BASE_PBX, extensionsYaml, removeTempRepos } from '../support/config-repo.js';
import { daemonSettings, DaemonProcess, freePort, WEBHOOK_SECRET } from '../support/daemon-process.js';
import { GitRemote } from '../support/git-remote.js';
import { startPbxHost } from '../support/pbx-host.js';
import { post, pushBody, signedHeaders } from '../support/webhook-client.js';
import { FakeEc2, loopbackAwsEnv, referenceWorld } from '../support/ec2-server.js';
import { FakeImds } from '../support/imds-server.js';
import { AGENT_NODE_MAJORS, nodeBinary } from '../support/node-lines.js';
import { unitNodeFlags } from '../support/unit-flags.js';
import type { BenchContext, BenchSection, SectionReport } from './section.js';
import { check, IDLE_BEFORE_RSS_MS, median, RSS_READ_NOTE, verdict, type BudgetCheck } from './stats.js';
import { ms, type Table } from './table.js';

const PUSHES = 20;
const NOOP_RUNS = 20;
const RSS_RUNS = 100;
const LATENCY_BUDGET_MS = 1000;
const RSS_BUDGET_MB = 80;
const TICKS = 100; // USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s


/** utime+stime of the process, and of its waited-for children (git), in ms. */
async function cpuMs(pid: number): Promise<{ self: number; children: number }> {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  const n = (i: number) => Number(fields[i - 3]);
  return { self: ((n(14) + n(15)) * 1000) / TICKS, children: ((n(16) + n(17)) * 1000) / TICKS };
}

async function rssMb(pid: number): Promise<{ rss: number; hwm: number; anon: number; file: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024, anon: kb('RssAnon') / 1024, file: kb('RssFile') / 1024 };
}

/** The Node.js line `bootstrap.sh` installs unless told otherwise. */
const DEFAULT_NODE_MAJOR = 24;

function p95(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.95 * s.length) - 1)]!;
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const checks: BudgetCheck[] = [];
  // As the systemd unit starts it: compiled, with the unit's node flags and environment.
  const { flags, env } = unitNodeFlags(path.join(ctx.projectRoot, 'systemd/pbx-agent.service'));
  const defaultNode = await nodeBinary(DEFAULT_NODE_MAJOR);
  const unit = { compiled: true, nodeFlags: flags, env: { ...process.env, ...env }, node: defaultNode.node };
  const host = await startPbxHost();
  const remote = await GitRemote.create();
  const numbers = Array.from({ length: 50 }, (_, i) => String(1001 + i));
  await remote.commit({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(numbers) });
  await remote.push();
  await remote.serve();
  const port = await freePort();
  let daemon: DaemonProcess | undefined;
  try {
    // 1. Push to verified, through the webhook.
    ctx.log(`push -> verified, ${PUSHES} pushes (Node.js ${defaultNode.version})`);
    daemon = DaemonProcess.start(await daemonSettings(host, { url: remote.url, webhookPort: port, sync: '0 0 1 1 *' }), unit);
    await daemon.finished(1, 'startup reconcile');
    const latencies: number[] = [];
    for (let i = 0; i < PUSHES; i++) {
      const commit = await remote.commit({ 'extensions/staff.yaml': extensionsYaml([...numbers, String(3000 + i)]) });
      await remote.push();
      const body = pushBody('main', commit);
      const t0 = performance.now();
      await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET));
      await daemon.waitFor((l) => l.some((x) => x.event === 'reconcile.finished' && x.revision === commit.slice(0, 12)), `push ${i}`);
      latencies.push(performance.now() - t0);
      const last = daemon.events('reconcile.finished').pop()!;
      if (last.status !== 'applied') throw new Error(`push ${i}: ${String(last.status)} ${String(last.error ?? '')}`);
    }
    const med = median(latencies);
    const latencyCheck = check({ what: 'push-to-verified latency via webhook (median of 20)', limit: LATENCY_BUDGET_MS, unit: 'ms' }, med);
    checks.push(latencyCheck);
    await daemon.stop();
    daemon = undefined;

    // 2. No-op scheduled runs: every second, nothing changed.
    ctx.log(`${NOOP_RUNS} no-op scheduled runs`);
    daemon = DaemonProcess.start(await daemonSettings(host, { url: remote.url, sync: '* * * * * *' }), unit);
    await daemon.finished(1, 'startup reconcile (no-op run section)');
    const pid = daemon.child.pid!;
    const files = ['pjsip', 'extensions', 'voicemail', 'rtp'].map((f) => path.join(host.configDir, `pbx-agent/${f}.conf`));
    const mtimes = await Promise.all(files.map(async (f) => (await stat(f)).mtimeMs));
    const reloads = host.asterisk.reloadCount();
    const actions = host.asterisk.actionsReceived().filter((a) => a.action.toLowerCase() !== 'ping').length;
    const cpu0 = await cpuMs(pid);
    const start = daemon.events('reconcile.finished').length;
    await daemon.finished(start + NOOP_RUNS, `${NOOP_RUNS} scheduled no-op runs`);
    const cpu1 = await cpuMs(pid);
    const noop = daemon.events('reconcile.finished').slice(start, start + NOOP_RUNS);
    if (noop.some((l) => l.status !== 'unchanged')) throw new Error('a scheduled run was not a no-op');
    const writes = (await Promise.all(files.map(async (f) => (await stat(f)).mtimeMs))).filter((m, i) => m !== mtimes[i]).length;
    const reloadsDuring = host.asterisk.reloadCount() - reloads;
    const amiDuring = host.asterisk.actionsReceived().filter((a) => a.action.toLowerCase() !== 'ping').length - actions;
    const noopDuration = median(noop.map((l) => Number(l.durationMs)));
    await daemon.stop();
    daemon = undefined;

    // 3. Memory after 100 runs (SIGHUP-triggered, each waited for), without and with the cloud
    // checks (loopback IMDS and EC2, a check every second: the EC2 SDK runs in its worker), on
    // every supported Node.js line.
    const memory = async (node: string, label: string, withCloud: boolean) => {
      const imds = new FakeImds();
      const ec2 = new FakeEc2(referenceWorld('203.0.113.10'));
      if (withCloud) await Promise.all([imds.start(), ec2.start()]);
      try {
        const env = withCloud ? loopbackAwsEnv(unit.env) : unit.env;
        const settingsFile = await daemonSettings(host, {
          url: remote.url,
          sync: '0 0 1 1 *',
          ...(withCloud ? { cloudSchedule: '*/3 * * * * *', cloud: { imds: imds.url, ec2: ec2.url } } : {}),
        });
        daemon = DaemonProcess.start(settingsFile, { ...unit, node, env });
        await daemon.finished(1, `startup reconcile (${label})`);
        const before = await rssMb(daemon.child.pid!);
        for (let i = 0; i < RSS_RUNS; i++) {
          if (i % 10 === 0) await remote.commit({ 'extensions/staff.yaml': extensionsYaml([...numbers, String(5000 + i)]) }).then(() => remote.push());
          daemon.signal('SIGHUP');
          await daemon.finished(2 + i, `run ${i + 1} of ${RSS_RUNS} (${label})`);
        }
        // Steady state: the daemon collects once it has been quiet for a while (agent/daemon/heap.ts).
        await new Promise((r) => setTimeout(r, IDLE_BEFORE_RSS_MS));
        const after = await rssMb(daemon.child.pid!);
        const cloudChecks = ec2.requests.filter((r) => r.action === 'DescribeAddresses').length;
        await daemon.stop();
        daemon = undefined;
        return { before, after, cloudChecks };
      } finally {
        if (withCloud) await Promise.all([imds.stop(), ec2.stop()]);
      }
    };
    const memoryRows: string[][] = [];
    for (const major of AGENT_NODE_MAJORS) {
      const { node, version } = await nodeBinary(major);
      for (const withCloud of [false, true]) {
        const label = `Node.js ${version}, cloud checks ${withCloud ? 'on' : 'off'}`;
        ctx.log(`memory: ${label}`);
        const m = await memory(node, label, withCloud);
        const rssCheck = check({ what: `daemon RSS after ${RSS_RUNS} runs, ${label}`, limit: RSS_BUDGET_MB, unit: 'MB' }, m.after.rss);
        checks.push(rssCheck);
        memoryRows.push([
          version,
          withCloud ? `on (${m.cloudChecks})` : 'off',
          m.before.rss.toFixed(1),
          m.after.rss.toFixed(1),
          m.after.anon.toFixed(1),
          m.after.file.toFixed(1),
          m.after.hwm.toFixed(1),
          `< ${RSS_BUDGET_MB}`,
          verdict(rssCheck),
        ]);
      }
    }
    const applied = (await new StateStore(host.stateDir).read()).applied?.revision;

    const envText = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ');
    const table: Table = {
      title: `The daemon as the systemd unit runs it (node ${flags.join(' ')} dist/agent/cli/main.js run; ${envText}) on Node.js ${defaultNode.version}, with a real git daemon on 127.0.0.1 and the loopback FakeAsterisk; 51 extensions`,
      columns: [{ header: 'measure', align: 'left' }, { header: 'value' }, { header: 'budget' }, { header: 'result', align: 'left' }],
      rows: [
        ['push → verified via webhook, median of 20', `${ms(med)} ms`, `< ${LATENCY_BUDGET_MS} ms`, verdict(latencyCheck)],
        ['push → verified via webhook, p95 of 20', `${ms(p95(latencies))} ms`, '', ''],
        [`no-op scheduled run: daemon CPU per run (${NOOP_RUNS} runs)`, `${ms((cpu1.self - cpu0.self) / NOOP_RUNS)} ms`, '', ''],
        ['no-op scheduled run: git children CPU per run', `${ms((cpu1.children - cpu0.children) / NOOP_RUNS)} ms`, '', ''],
        ['no-op scheduled run: wall time of reconcile (median)', `${ms(noopDuration)} ms`, '', ''],
        ['no-op scheduled runs: files written / reloads / AMI actions', `${writes} / ${reloadsDuring} / ${amiDuring}`, '0 / 0 / 0', writes + reloadsDuring + amiDuring === 0 ? 'PASS' : 'OVER'],
      ],
      notes: [
        'Latency: from the webhook POST (after git push) to the reconcile.finished line of that commit (fetch + render + apply + reload + verify).',
        `CPU from /proc/<pid>/stat (1/${TICKS} s resolution); AMI actions exclude keepalive Pings. Applied at the end: ${applied ?? '?'}.`,
      ],
    };
    const memoryTable: Table = {
      title: `Daemon memory on each supported Node.js line: RSS after startup and after ${RSS_RUNS} more runs (SIGHUP; a new commit every 10), 51 extensions; with cloud checks every 3 s against loopback IMDS/EC2`,
      columns: [
        { header: 'node' },
        { header: 'cloud checks', align: 'left' },
        { header: 'RSS start MB' },
        { header: `RSS after ${RSS_RUNS} MB` },
        { header: 'anon MB' },
        { header: 'file MB' },
        { header: 'peak MB' },
        { header: 'budget MB' },
        { header: 'result', align: 'left' },
      ],
      rows: memoryRows,
      notes: [
        'anon: RssAnon (heap, malloc); file: RssFile (pages of the node binary, ICU data and libraries: shared and reclaimable, but counted in RSS).',
        `RSS after: ${RSS_READ_NOTE}.`,
      ],
    };
    if (writes + reloadsDuring + amiDuring !== 0) checks.push({ what: 'no-op runs write, reload and ask nothing', limit: 1, unit: 'count', actual: writes + reloadsDuring + amiDuring, pass: false });
    return { tables: [table, memoryTable], checks };
  } finally {
    await daemon?.stop();
    await remote.stopServing();
    await host.stop();
    await removeTempRepos();
  }
}

export const daemonSection: BenchSection = { id: 'daemon', name: 'the daemon: latency, idle cost, memory', run };
