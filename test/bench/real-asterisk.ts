/**
 * Section 5: the agent against the REAL packaged Asterisk, as users run it (issue 12).
 *
 * One fresh host booted under its own systemd (test/support/e2e-host.ts, the end-to-end test's
 * host): the release tarball installed by bootstrap/bootstrap.sh, which apt-installs the packaged
 * Asterisk and runs pbx-agent as its systemd unit with the settings it writes; the config repo on a
 * git host over ssh inside the container; push webhooks; sipp phones. At 1,000 and then 10,000
 * generated extensions (test/bench/gen-repo.ts; the 10,000 are the 1,000 plus 9,000 more):
 *
 * 1. Asterisk's own cost of `module reload <module>.so` per managed module (an AMI Command on the
 *    container's loopback, timed until Asterisk answers), with the managed file touched (a full
 *    re-read, as after a change) and untouched (Asterisk skips a file whose size and mtime are
 *    unchanged).
 * 2. Through the daemon: one extension added, renamed (pjsip.conf only), given another ring time
 *    (extensions.conf only), removed; each a git push and a webhook. Push → applied is the webhook's
 *    send time to the journal timestamp of the reconcile.finished line of that commit (after the
 *    agent's own verify); push → registrable / seen / gone is what a phone or `asterisk -rx` sees.
 * 3. No-op: a README commit. The run must write no managed file and send Asterisk no Reload and no
 *    DialplanExtension* action: checked from its reconcile.finished line, the managed files' mtimes,
 *    Asterisk's "Last reload" time and the AMI actions Asterisk itself logged (manager set debug).
 * 4. The daemon's memory after those runs.
 *
 * Needs root, systemd-nspawn, debootstrap, nsenter and zstd (test/setup-host.sh installs them);
 * without them it reports "not measured". The first run on a machine builds the root filesystem
 * (host-container.ts, cached afterwards). The container is powered off on exit and on SIGINT.
 * PBX_BENCH_REAL_CYCLES (default 3) sets how many add/change/remove cycles run at each size;
 * PBX_BENCH_REAL_SIZES=1000 measures at 1,000 only (a quicker look; the budgets at 10,000 then go
 * unchecked, and the report says so).
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { md5Credential } from '../../agent/resolve/index.js';
import { E2eHost } from '../support/e2e-host.js';
import { preparedRootfs, WORK_ROOT } from '../support/host-container.js';
import { nodeDist } from '../support/node-lines.js';
import { buildRelease } from '../support/release.js';
import { benchPassword, generateConfigRepo } from './gen-repo.js';
import type { BenchContext, BenchSection, SectionReport } from './section.js';
import { check, IDLE_BEFORE_RSS_MS, median, RSS_READ_NOTE, verdict, type BudgetCheck } from './stats.js';
import { count, mb, ms, type Table } from './table.js';

const execFileP = promisify(execFile);

/** The host boots with the first size; the second is pushed on top of it. */
const SIZES: readonly [number, ...number[]] = process.env.PBX_BENCH_REAL_SIZES === '1000' ? [1000] : [1000, 10000];
const CYCLES = Math.max(1, Number(process.env.PBX_BENCH_REAL_CYCLES ?? 3) || 3);
const RELOAD_RUNS = 3;
const NOOP_RUNS = 3;
/** The Node.js line bootstrap.sh installs unless told otherwise. */
const NODE_MAJOR = 24;
/** Numbers of the extensions the cycles add: outside the generated 10000-19999. */
const FIRST_ADDED = 20000;
/** The generated file the cycles add to and remove from (500 extensions at either size). */
const EDITED_FILE = 'extensions/000-sales.yaml';
const RING_SECONDS = 25;
/** Pauses between a user-side probe's tries: a sipp REGISTER, an asterisk -rx look. */
const SIPP_PAUSE_MS = 100;
const CLI_PAUSE_MS = 250;

/** Modules and the managed file each reads (agent/managed-files.ts). */
const MODULES = [
  { module: 'res_pjsip', file: '/etc/asterisk/pbx-agent/pjsip.conf' },
  { module: 'pbx_config', file: '/etc/asterisk/pbx-agent/extensions.conf' },
  { module: 'app_voicemail', file: '/etc/asterisk/pbx-agent/voicemail.conf' },
  { module: 'res_rtp_asterisk', file: '/etc/asterisk/pbx-agent/rtp.conf' },
] as const;

const BUDGET_10K_MS = 2000;
const BUDGET_1K_MS = 300;
const RSS_BUDGET_MB: Record<number, number> = { 1000: 80, 10000: 100 };

/** The daemon folds live objects fold_after_seconds (30 s, bootstrap's default) after the last change. */
const FOLD_WAIT_MS = 3 * 60_000;

/** How long one push may take to be applied: a first apply of 9,000 extensions takes minutes. */
const OP_TIMEOUT_MS = 5 * 60_000;
const SETUP_TIMEOUT_MS = 20 * 60_000;

type Event = Record<string, unknown>;

interface JournalLine {
  /** Journal timestamp (when journald received the line), epoch ms. */
  at: number;
  event: Event;
}

/**
 * The agent's JSON log lines as journald records them, followed (journalctl -f -o json -a), each
 * with journald's own timestamp: a wait for a line never adds polling delay to what is measured.
 * journald splits lines longer than its LineMax (48 KiB; a reconcile.finished of 9,000 added
 * extensions is longer): consecutive pieces are joined until they parse.
 */
class JournalTail {
  readonly lines: JournalLine[] = [];
  private readonly child: ChildProcess;
  private waiters: Array<() => void> = [];
  private partial: { at: number; text: string } | undefined;

  constructor(h: E2eHost) {
    this.child = h.c.spawn(['journalctl', '-u', 'pbx-agent', '-o', 'json', '-a', '-f', '--no-pager', '-n', 'all']);
    this.child.stdin!.end();
    this.child.stderr!.resume();
    createInterface({ input: this.child.stdout! }).on('line', (raw) => this.take(raw));
  }

  private take(raw: string): void {
    let entry: { MESSAGE?: unknown; __REALTIME_TIMESTAMP?: string };
    try {
      entry = JSON.parse(raw) as typeof entry;
    } catch {
      return;
    }
    const message = Array.isArray(entry.MESSAGE) ? Buffer.from(entry.MESSAGE as number[]).toString('utf8') : entry.MESSAGE;
    if (typeof message !== 'string') return;
    const at = Number(entry.__REALTIME_TIMESTAMP) / 1000;
    const piece = this.partial ? { at, text: this.partial.text + message } : { at, text: message };
    if (!piece.text.startsWith('{')) return;
    try {
      this.lines.push({ at: piece.at, event: JSON.parse(piece.text) as Event });
      this.partial = undefined;
    } catch {
      // A piece of a split line: wait for the next (give up on something that never parses).
      this.partial = piece.text.length < 16 << 20 ? piece : undefined;
      return;
    }
    for (const w of this.waiters.splice(0)) w();
  }

  find(pred: (e: Event) => boolean, skip = 0): JournalLine | undefined {
    let left = skip;
    return this.lines.find((l) => pred(l.event) && left-- === 0);
  }

  count(pred: (e: Event) => boolean): number {
    return this.lines.filter((l) => pred(l.event)).length;
  }

  /** The first line matching `pred` after the first `skip` such lines, waiting up to timeoutMs. */
  async waitFor(pred: (e: Event) => boolean, timeoutMs: number, skip = 0): Promise<JournalLine | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.find(pred, skip);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 5000));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  stop(): void {
    this.child.kill();
  }
}

const finishedOf = (commit: string) => (e: Event) => e.event === 'reconcile.finished' && e.revision === commit.slice(0, 12);

/** What a user-side probe waits for: tries, a pause between them, and when to give up. */
interface Probe {
  attempt: () => Promise<boolean>;
  pauseMs: number;
}

/**
 * Repeats a probe until it succeeds or `deadline()` (epoch ms, read before each try: it moves
 * once the agent's run has ended) passes; the time it first succeeded, NaN if it never did.
 */
async function firstSuccess(probe: Probe, deadline: () => number): Promise<{ at: number; attempts: number }> {
  let attempts = 0;
  while (Date.now() < deadline()) {
    attempts++;
    if (await probe.attempt()) return { at: Date.now(), attempts };
    await new Promise((r) => setTimeout(r, probe.pauseMs));
  }
  return { at: NaN, attempts };
}

/** How long a user-side probe keeps trying after the agent's run ended (a reload may still be under way in Asterisk). */
const PROBE_GRACE_MS = 60_000;

function cli(out: string): string {
  // Without an ethernet interface (the container has only loopback) asterisk -rx first says so.
  return out.replace(/^No ethernet interface found.*\n/m, '').trim();
}

interface OpResult {
  size: number;
  op: string;
  /** What a user sees: registrable, seen in Asterisk, gone. */
  seenLabel: string;
  status: string;
  changedFiles: string[];
  reloads: string[];
  /** Live-object edits sent instead of a res_pjsip reload (reconcile.finished liveObjectEdits). */
  liveObjectEdits: number;
  pushMs: number;
  appliedMs: number;
  durationMs: number;
  stages: Record<string, number>;
  /** The reconcile.finished line's trigger.waitedMs: how long the run waited to start. */
  waitedMs: number;
  seenMs: number;
  seenAttempts: number;
}

interface ReloadResult {
  size: number;
  module: string;
  touched: boolean;
  runs: number[];
  answer: string;
}

interface NoopResult {
  size: number;
  statuses: string[];
  durations: number[];
  appliedMs: number[];
  reloads: string[];
  changedFiles: string[];
  lastReloadUnchanged: boolean;
  filesUnchanged: boolean;
  /** AMI actions Asterisk logged during the no-op runs, by name; undefined when it could not be observed. */
  actions: Record<string, number> | undefined;
  amiNote: string;
}

interface MemoryResult {
  size: number;
  rss: number;
  anon: number;
  file: number;
  hwm: number;
  memoryCurrent: string;
  asteriskRss: number;
}

function notMeasured(reason: string): SectionReport {
  return { tables: [], checks: [], notMeasured: `real-asterisk: ${reason}` };
}

async function which(tool: string): Promise<boolean> {
  return execFileP('sh', ['-c', `command -v ${tool}`]).then(
    () => true,
    () => false,
  );
}

/** Why this machine cannot run the section, or undefined. */
async function cannotRun(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (it boots a container with systemd-nspawn and enters it with nsenter)';
  for (const tool of ['systemd-nspawn', 'debootstrap', 'nsenter', 'zstd']) {
    if (!(await which(tool))) return `${tool} is missing (test/setup-host.sh installs what the end-to-end test and this section need)`;
  }
  // Two booted containers on one cgroup-v1 host share the unified hierarchy and break each other.
  const others = await execFileP('pgrep', ['-x', 'systemd-nspawn']).then(
    (r) => r.stdout.trim(),
    () => '',
  );
  if (others) return `another systemd-nspawn is running (pid ${others.split('\n').join(', ')}); two booted containers on one host break each other`;
  return undefined;
}

/**
 * One run of this section on the machine at a time, from its start (a run still building the
 * release has no container yet, so pgrep alone cannot see it): a lock directory holding the pid.
 */
async function takeLock(): Promise<string | undefined> {
  const lock = path.join(WORK_ROOT, 'real-asterisk.lock');
  await mkdir(WORK_ROOT, { recursive: true });
  for (let i = 0; i < 2; i++) {
    try {
      await mkdir(lock);
      await writeFile(path.join(lock, 'pid'), String(process.pid));
      return lock;
    } catch {
      const pid = Number(await readFile(path.join(lock, 'pid'), 'utf8').catch(() => '0'));
      let alive = false;
      try {
        alive = pid > 0 && process.kill(pid, 0);
      } catch {
        alive = false;
      }
      if (alive) return undefined;
      await rm(lock, { recursive: true, force: true }); // left by a run that was killed
    }
  }
  return undefined;
}

async function run(ctx: BenchContext): Promise<SectionReport> {
  const why = await cannotRun();
  if (why) return notMeasured(why);
  const lock = await takeLock();
  if (!lock) return notMeasured(`another run of this section holds ${path.join(WORK_ROOT, 'real-asterisk.lock')}; two booted containers on one host break each other`);
  const release = () => rm(lock, { recursive: true, force: true });
  const unlock = ctx.onInterrupt(release);
  try {
    return await runLocked(ctx);
  } finally {
    await release();
    unlock();
  }
}

async function runLocked(ctx: BenchContext): Promise<SectionReport> {
  ctx.log('real-asterisk: root filesystem (built on the first run on this machine, then cached)');
  const rootfs = await preparedRootfs((m) => ctx.log(`real-asterisk: ${m}`));
  ctx.log('real-asterisk: release tarball (npm pack)');
  const release = await buildRelease(path.join(ctx.tmpDir, 'release'));
  const node = await nodeDist(NODE_MAJOR);

  let starting: Promise<E2eHost> | undefined;
  let journal: JournalTail | undefined;
  let stopped: Promise<void> | undefined;
  const stop = () => {
    stopped ??= (async () => {
      journal?.stop();
      const h = await starting?.catch(() => undefined);
      await h?.stop();
    })();
    return stopped;
  };
  const unregister = ctx.onInterrupt(stop);
  try {
    const t0 = performance.now();
    ctx.log(`real-asterisk: boot the host, config repo of ${count(SIZES[0])} extensions`);
    starting = E2eHost.start(rootfs, release, node, { label: 'bench-real-asterisk', seed: async (clone) => void (await generateConfigRepo(clone, SIZES[0])) });
    const h = await starting;
    const bootMs = performance.now() - t0;
    journal = new JournalTail(h);
    return await measure(ctx, h, journal, { bootMs, nodeVersion: node.version });
  } finally {
    await stop();
    unregister();
  }
}

async function measure(ctx: BenchContext, h: E2eHost, journal: JournalTail, info: { bootMs: number; nodeVersion: string }): Promise<SectionReport> {
  const setupRows: string[][] = [];
  ctx.log('real-asterisk: bootstrap.sh (apt-get install asterisk, Node.js, the unit, the first sync)');
  const t0 = performance.now();
  const boot = await h.bootstrap((line) => {
    if (/(^|: )== \d+\/\d+ /.test(line)) ctx.log(`real-asterisk:   ${line}`);
  });
  const bootstrapMs = performance.now() - t0;
  if (boot.code !== 0) throw new Error(`bootstrap exit ${boot.code}: ${boot.lastLine}\n${boot.stdout.slice(-3000)}`);
  const firstRun = await journal.waitFor((e) => e.event === 'reconcile.finished', 30_000);
  const asteriskVersion = cli((await h.c.exec(['asterisk', '-rx', 'core show version'])).stdout);
  setupRows.push(['boot the container (systemd-nspawn -b)', `${ms(info.bootMs)} ms`, '']);
  setupRows.push([
    `bootstrap.sh, first run (apt-get install asterisk, Node.js ${info.nodeVersion}; first sync of ${count(SIZES[0])})`,
    `${ms(bootstrapMs)} ms`,
    boot.lastLine.replace(/^pbx-agent-bootstrap: /, ''),
  ]);
  setupRows.push([
    `first reconcile: ${count(SIZES[0])} extensions`,
    `${ms(Number(firstRun?.event.durationMs))} ms`,
    `${String(firstRun?.event.status)}; reloads ${JSON.stringify(firstRun?.event.reloads)}; stages ${stagesText(firstRun?.event.stages)}`,
  ]);

  const reloads: ReloadResult[] = [];
  const ops: OpResult[] = [];
  const folds: FoldResult[] = [];
  const noops: NoopResult[] = [];
  const memory: MemoryResult[] = [];
  const clone = h.c.at('/home/git/clone');
  let added = FIRST_ADDED;

  for (const size of SIZES) {
    if (size !== SIZES[0]) {
      ctx.log(`real-asterisk: push ${count(size - SIZES[0])} more extensions (${count(size)} in all); the first apply takes a while`);
      await generateConfigRepo(clone, size);
      const commit = await h.pushAll(`${count(size)} extensions`);
      const { sentAt } = await h.webhookTimed(commit);
      const line = await waitLogged(ctx, journal, commit, SETUP_TIMEOUT_MS, `${count(size)} extensions applied`);
      setupRows.push([
        `push of ${count(size - SIZES[0])} more extensions → applied (${count(size)} in all)`,
        line ? `${ms(line.at - sentAt)} ms` : 'no reconcile.finished',
        line ? `${String(line.event.status)}; agent ${String(line.event.durationMs)} ms; reloads ${JSON.stringify(line.event.reloads)}; stages ${stagesText(line.event.stages)}${line.event.error ? `; error: ${String(line.event.error)}` : ''}` : `waited ${SETUP_TIMEOUT_MS / 60_000} min`,
      ]);
      if (line?.event.status !== 'applied') throw new Error(`the push to ${size} extensions was not applied: ${JSON.stringify(line?.event ?? 'no reconcile.finished line').slice(0, 2000)}`);
    }
    const endpoints = cli((await h.c.exec(['asterisk', '-rx', 'pjsip show endpoints'], { timeoutMs: 120_000 })).stdout);
    const endpointCount = /Objects found: (\d+)/.exec(endpoints)?.[1] ?? '?';
    setupRows.push([`endpoints Asterisk has at ${count(size)} (pjsip show endpoints)`, endpointCount, '']);

    ctx.log(`real-asterisk: ${count(size)}: Asterisk's own module reloads, ${RELOAD_RUNS} runs each`);
    reloads.push(...(await measureReloads(h, size)));

    for (let c = 0; c < CYCLES; c++) {
      const n = String(added++);
      ctx.log(`real-asterisk: ${count(size)}: cycle ${c + 1}/${CYCLES}: add, rename, ring time, remove ${n}`);
      ops.push(...(await cycle(ctx, h, journal, size, n, folds)));
    }

    ctx.log(`real-asterisk: ${count(size)}: ${NOOP_RUNS} no-op pushes (README)`);
    noops.push(await measureNoop(ctx, h, journal, size));

    memory.push(await measureMemory(h, size));
  }
  const agentErrors = journal.lines.filter((l) => ['warn', 'error', 'fatal'].includes(String(l.event.level)));

  return report({ setupRows, reloads, ops, folds, noops, memory, asteriskVersion, nodeVersion: info.nodeVersion, agentErrors });
}

async function waitLogged(ctx: BenchContext, journal: JournalTail, commit: string, timeoutMs: number, what: string): Promise<JournalLine | undefined> {
  const started = Date.now();
  const ticker = setInterval(() => ctx.log(`real-asterisk:   waiting for ${what}: ${Math.round((Date.now() - started) / 1000)} s`), 30_000);
  try {
    return await journal.waitFor(finishedOf(commit), timeoutMs);
  } finally {
    clearInterval(ticker);
  }
}

/** `module reload` of each managed module, as AMI Command actions on the container's loopback. */
async function measureReloads(h: E2eHost, size: number): Promise<ReloadResult[]> {
  const out: ReloadResult[] = [];
  // The reloads themselves over AMI (Command): `asterisk -rx` gives up after 60 s without output.
  const secret = (await h.c.exec(['cat', '/etc/pbx-agent/ami.secret'])).stdout.trim();
  const timer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ami-reload-timer.mjs');
  for (const touched of [true, false]) {
    for (const { module, file } of MODULES) {
      const r = await h.c.execInNetwork([process.execPath, timer, secret, module, String(RELOAD_RUNS), touched ? h.c.at(file) : ''], { timeoutMs: 15 * 60_000 });
      if (r.code !== 0) throw new Error(`module reload ${module}: ${r.stderr}`);
      const lines = r.stdout.trim().split('\n').map((l) => l.split('\t'));
      out.push({ size, module, touched, runs: lines.map((l) => Number(l[0])), answer: [...new Set(lines.map((l) => (l[1] ?? '').trim()))].join(' | ') });
    }
  }
  return out;
}

function entryYaml(n: string, name: string, ring?: number): string {
  return [
    `  - number: "${n}"`,
    `    name: ${name}`,
    `    md5: ${md5Credential(n, 'asterisk', benchPassword(n))}`,
    ...(ring !== undefined ? [`    ring_seconds: ${ring}`] : []),
    '',
  ].join('\n');
}

/** One extension added, renamed, given another ring time and removed, each a push + webhook. */
async function cycle(ctx: BenchContext, h: E2eHost, journal: JournalTail, size: number, n: string, folds: FoldResult[]): Promise<OpResult[]> {
  const file = h.c.at(`/home/git/clone/${EDITED_FILE}`);
  const base = await readFile(file, 'utf8');
  const withNewline = base.endsWith('\n') ? base : `${base}\n`;
  const password = benchPassword(n);
  const sippPort = 5081;
  const results: OpResult[] = [];

  const step = async (op: string, text: string, seenLabel: string, seen: Probe) => {
    await writeFile(file, text);
    const p0 = performance.now();
    const commit = await h.pushAll(`bench: ${op} ${n}`);
    const pushMs = performance.now() - p0;
    const { status, sentAt } = await h.webhookTimed(commit);
    if (status !== 202) throw new Error(`webhook for ${op} ${n}: HTTP ${status}`);
    let giveUp = Date.now() + OP_TIMEOUT_MS;
    const finished = journal.waitFor(finishedOf(commit), OP_TIMEOUT_MS).then((l) => {
      giveUp = Math.min(giveUp, Date.now() + PROBE_GRACE_MS);
      return l;
    });
    const [line, user] = await Promise.all([finished, firstSuccess(seen, () => giveUp)]);
    const e = line?.event ?? {};
    const r: OpResult = {
      size,
      op,
      seenLabel,
      status: String(e.status ?? 'no reconcile.finished'),
      changedFiles: (e.changedFiles as string[] | undefined) ?? [],
      reloads: (e.reloads as string[] | undefined) ?? [],
      liveObjectEdits: Number(e.liveObjectEdits ?? 0),
      pushMs,
      appliedMs: line ? line.at - sentAt : NaN,
      durationMs: Number(e.durationMs ?? NaN),
      stages: (e.stages as Record<string, number> | undefined) ?? {},
      waitedMs: Number((e.trigger as { waitedMs?: number } | undefined)?.waitedMs ?? NaN),
      seenMs: user.at - sentAt,
      seenAttempts: user.attempts,
    };
    ctx.log(`real-asterisk:   ${op} ${n}: ${r.status}, push→applied ${ms(r.appliedMs)} ms (agent ${r.durationMs} ms, waited ${r.waitedMs} ms to start), push→${seenLabel} ${ms(r.seenMs)} ms; reloads ${r.reloads.join(',') || '-'}; live-object edits ${r.liveObjectEdits}; stages ${stagesText(r.stages)}`);
    results.push(r);
  };

  const registers: Probe = { attempt: async () => (await h.sipp('register-200', n, password, sippPort)).code === 0, pauseMs: SIPP_PAUSE_MS };
  // Gone: REGISTER with the right password is refused (sipp's register-401 scenario succeeds).
  const refused: Probe = { attempt: async () => (await h.sipp('register-401', n, password, sippPort)).code === 0, pauseMs: SIPP_PAUSE_MS };
  // Looking at the dialplan takes Asterisk's context lock, which a pbx_config reload needs too: not too often.
  const cliHas = (command: string, want: RegExp): Probe => ({
    attempt: async () => want.test(cli((await h.c.exec(['asterisk', '-rx', command])).stdout)),
    pauseMs: CLI_PAUSE_MS,
  });

  await step('add', withNewline + entryYaml(n, `Bench ${n}`), 'registrable', registers);
  await step('rename (pjsip.conf only)', withNewline + entryYaml(n, `Renamed ${n}`), 'seen', cliHas(`pjsip show endpoint ${n}`, new RegExp(`callerid\\s*:\\s*"Renamed ${n}" <${n}>`)));
  await step(`ring time → ${RING_SECONDS} s (extensions.conf only)`, withNewline + entryYaml(n, `Renamed ${n}`, RING_SECONDS), 'seen', cliHas(`dialplan show ${n}@internal`, new RegExp(`\\(${n},${RING_SECONDS},`)));
  // The extension is in pjsip.conf as Asterisk loaded it once the fold has run: its removal is
  // the harder case (a lock-out until the next fold), not the deletion of a live object.
  await fold(ctx, journal, size, folds);
  await step('remove', base, 'gone', refused);
  await fold(ctx, journal, size, folds);
  return results;
}

interface FoldResult {
  size: number;
  /** live.folded's ms: the res_pjsip reload, the astdb family dropped, the read-back. */
  ms: number;
  added: number;
  changed: number;
  removed: number;
}

const isFolded = (e: Event) => e.event === 'live.folded';

/** Waits for the daemon's next fold of live objects (fold_after_seconds after the last change). */
async function fold(ctx: BenchContext, journal: JournalTail, size: number, folds: FoldResult[]): Promise<void> {
  const before = journal.count(isFolded);
  const line = await journal.waitFor(isFolded, FOLD_WAIT_MS, before);
  if (!line) throw new Error(`no live.folded within ${FOLD_WAIT_MS / 1000} s`);
  const e = line.event;
  const result = { size, ms: Number(e.ms), added: Number(e.added), changed: Number(e.changed), removed: Number(e.removed) };
  ctx.log(`real-asterisk:   fold: ${result.ms} ms (${result.added} added, ${result.changed} changed, ${result.removed} removed)`);
  folds.push(result);
}

async function managedFilesStat(h: E2eHost): Promise<string> {
  return (await h.c.sh("find /etc/asterisk/pbx-agent -type f -printf '%p %T@ %s\\n' | sort")).stdout;
}

async function lastReloadAt(h: E2eHost): Promise<number> {
  const r = await h.c.exec(['asterisk', '-rx', 'core show uptime seconds']);
  const m = /Last reload: (\d+)/.exec(r.stdout);
  return m ? Date.now() / 1000 - Number(m[1]) : NaN;
}

/** README commits: nothing managed changes. Asterisk's own log says which AMI actions arrived. */
async function measureNoop(ctx: BenchContext, h: E2eHost, journal: JournalTail, size: number): Promise<NoopResult> {
  // `logger show channels` prints at most 35 characters of a channel's name: keep it shorter.
  const amiLog = '/var/log/asterisk/bench-ami';
  await h.c.sh(`rm -f ${amiLog}`);
  const added = await h.c.sh(`asterisk -rx 'logger add channel ${amiLog} verbose' && asterisk -rx 'manager set debug on' && asterisk -rx 'logger show channels'`);
  const observing = added.code === 0 && added.stdout.includes(amiLog);
  await new Promise((r) => setTimeout(r, 1100)); // "Last reload" counts whole seconds
  const files0 = await managedFilesStat(h);
  const reload0 = await lastReloadAt(h);
  const lines: JournalLine[] = [];
  const applied: number[] = [];
  for (let i = 0; i < NOOP_RUNS; i++) {
    await writeFile(h.c.at('/home/git/clone/README.md'), `# PBX configuration\n\nNo-op commit ${size}-${i}: nothing managed changes.\n`);
    const commit = await h.pushAll(`README ${size}-${i}`);
    const { sentAt } = await h.webhookTimed(commit);
    const line = await journal.waitFor(finishedOf(commit), OP_TIMEOUT_MS);
    if (!line) throw new Error(`no reconcile.finished for the no-op commit ${commit}`);
    lines.push(line);
    applied.push(line.at - sentAt);
    ctx.log(`real-asterisk:   no-op ${i + 1}: ${String(line.event.status)} in ${String(line.event.durationMs)} ms`);
  }
  const files1 = await managedFilesStat(h);
  const reload1 = await lastReloadAt(h);
  // A control: one Ping of our own (ActionIDs bench-control-*) must show in the log, or an empty
  // log would prove nothing.
  const control = await amiControlPing(h);
  await new Promise((r) => setTimeout(r, 500));
  await h.c.sh(`asterisk -rx 'manager set debug off'; asterisk -rx 'logger remove channel ${amiLog}' || true`);
  let actions: Record<string, number> | undefined;
  let amiNote = observing ? '' : `could not add an Asterisk log channel for manager debug: ${cli(added.stdout + added.stderr).replace(/\s+/g, ' ').slice(0, 200)}`;
  if (observing) {
    const blocks = amiActions((await h.c.exec(['cat', amiLog])).stdout);
    const controlSeen = blocks.some((b) => b.action === 'ping' && b.actionId === 'bench-control-ping');
    if (controlSeen) {
      actions = {};
      for (const b of blocks.filter((x) => !x.actionId.startsWith('bench-control'))) actions[b.action] = (actions[b.action] ?? 0) + 1;
    } else {
      amiNote = `the control Ping did not show in Asterisk's manager debug log (control: ${control.slice(0, 200)})`;
    }
  }
  return {
    size,
    statuses: lines.map((l) => String(l.event.status)),
    durations: lines.map((l) => Number(l.event.durationMs)),
    appliedMs: applied,
    reloads: lines.flatMap((l) => (l.event.reloads as string[] | undefined) ?? []),
    changedFiles: lines.flatMap((l) => (l.event.changedFiles as string[] | undefined) ?? []),
    lastReloadUnchanged: Math.abs(reload1 - reload0) <= 1,
    filesUnchanged: files0 === files1,
    actions,
    amiNote,
  };
}

/** The actions in Asterisk's `manager set debug on` output: "<--- Examining AMI action: -->" then its headers. */
function amiActions(log: string): Array<{ action: string; actionId: string }> {
  const out: Array<{ action: string; actionId: string }> = [];
  for (const block of log.split(/<-+ Examining AMI action: -+>/).slice(1)) {
    const headers = block.split('\n').slice(1);
    const end = headers.findIndex((l) => l.trim() === '' || l.startsWith('['));
    const get = (key: string) => headers.slice(0, end < 0 ? undefined : end).find((l) => l.toLowerCase().startsWith(`${key}:`))?.slice(key.length + 1).trim() ?? '';
    out.push({ action: get('action').toLowerCase(), actionId: get('actionid') });
  }
  return out;
}

/** Logs in as the agent's AMI user (the bootstrap's secret) and sends one Ping. */
async function amiControlPing(h: E2eHost): Promise<string> {
  const secret = (await h.c.exec(['cat', '/etc/pbx-agent/ami.secret'])).stdout.trim();
  const script = `const s=require('net').connect(5038,'127.0.0.1');let b='',done=false;s.setEncoding('utf8');s.on('data',(d)=>{b+=d;if(!done&&/ActionID: bench-control-ping/.test(b)){done=true;s.end('Action: Logoff\\r\\nActionID: bench-control-logoff\\r\\n\\r\\n');}});s.on('close',()=>process.stdout.write(b));s.on('error',(e)=>{process.stdout.write(String(e));process.exit(1)});s.write('Action: Login\\r\\nActionID: bench-control-login\\r\\nUsername: pbx-agent\\r\\nSecret: '+process.argv[1]+'\\r\\nEvents: off\\r\\n\\r\\nAction: Ping\\r\\nActionID: bench-control-ping\\r\\n\\r\\n');setTimeout(()=>{process.stdout.write(b);process.exit(2)},5000);`;
  const r = await h.c.execInNetwork([process.execPath, '-e', script, secret]);
  return (r.stdout + r.stderr).replace(/\r/g, '').replace(/\n/g, ' ');
}

async function measureMemory(h: E2eHost, size: number): Promise<MemoryResult> {
  await new Promise((r) => setTimeout(r, IDLE_BEFORE_RSS_MS));
  const pid = await h.agentPid();
  const status = (await h.c.exec(['cat', `/proc/${pid}/status`])).stdout;
  const kb = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) / 1024;
  const current = (await h.c.exec(['systemctl', 'show', '-p', 'MemoryCurrent', '--value', 'pbx-agent'])).stdout.trim();
  const astPid = (await h.c.exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'asterisk'])).stdout.trim();
  const astStatus = (await h.c.exec(['cat', `/proc/${astPid}/status`])).stdout;
  return {
    size,
    rss: kb(status, 'VmRSS'),
    anon: kb(status, 'RssAnon'),
    file: kb(status, 'RssFile'),
    hwm: kb(status, 'VmHWM'),
    memoryCurrent: /^\d+$/.test(current) ? `${mb(Number(current) / 1048576)} MB` : current || '?',
    asteriskRss: kb(astStatus, 'VmRSS'),
  };
}

const STAGES = ['fetch', 'checkout', 'render', 'plan', 'save', 'preflight', 'apply', 'reload', 'verify', 'record'] as const;

function stagesText(stages: unknown): string {
  if (!stages || typeof stages !== 'object') return '?';
  return Object.entries(stages as Record<string, number>)
    .map(([k, v]) => `${k} ${Math.round(v)}`)
    .join(', ');
}

function med(xs: number[]): string {
  const ok = xs.filter((x) => Number.isFinite(x));
  if (ok.length === 0) return '—';
  return ms(median(ok)) + (ok.length < xs.length ? ` (${xs.length - ok.length} missing)` : '');
}

function report(r: {
  setupRows: string[][];
  reloads: ReloadResult[];
  ops: OpResult[];
  folds: FoldResult[];
  noops: NoopResult[];
  memory: MemoryResult[];
  asteriskVersion: string;
  nodeVersion: string;
  agentErrors: JournalLine[];
}): SectionReport {
  const checks: BudgetCheck[] = [];
  const where = `${r.asteriskVersion.split('\n')[0]} (Debian's package), pbx-agent as its systemd unit on Node.js ${r.nodeVersion}, in a booted container on this machine`;

  const setup: Table = {
    title: `Setting up: ${where}`,
    columns: [{ header: 'step', align: 'left' }, { header: 'time' }, { header: 'result', align: 'left' }],
    rows: r.setupRows,
  };

  const reloadTable: Table = {
    title: `Asterisk's own reload cost: 'module reload <module>.so' as an AMI Command action on loopback, timed until Asterisk answers, median of ${RELOAD_RUNS}`,
    columns: [
      { header: 'extensions' },
      { header: 'module', align: 'left' },
      { header: 'managed file', align: 'left' },
      { header: 'median ms' },
      { header: 'min ms' },
      { header: 'max ms' },
      { header: 'Asterisk answered', align: 'left' },
    ],
    rows: r.reloads.map((x) => [
      count(x.size),
      x.module,
      x.touched ? 'touched (re-read)' : 'unchanged',
      ms(median(x.runs)),
      ms(Math.min(...x.runs)),
      ms(Math.max(...x.runs)),
      x.answer.slice(0, 70),
    ]),
    notes: [
      'touched: `touch` on /etc/asterisk/pbx-agent/<file> first, so Asterisk re-reads it as after a change; unchanged: Asterisk may skip a file whose size and mtime did not change.',
      'AMI answers a Command when the reload is done (asterisk -rx stops waiting after 60 s without output, main/asterisk.c). 0.5 s pause between runs.',
    ],
  };

  const opRows: string[][] = [];
  const sizes = [...new Set(r.ops.map((o) => o.size))];
  for (const size of sizes) {
    const names = [...new Set(r.ops.filter((o) => o.size === size).map((o) => o.op))];
    for (const op of names) {
      const xs = r.ops.filter((o) => o.size === size && o.op === op);
      const applied = xs.map((o) => o.appliedMs);
      const ok = applied.filter((x) => Number.isFinite(x));
      const value = ok.length === applied.length && ok.length > 0 ? median(ok) : NaN;
      const limit = size >= 10000 ? BUDGET_10K_MS : size <= 1000 ? BUDGET_1K_MS : undefined;
      let budget = '';
      let result = '';
      if (limit !== undefined) {
        const c = check({ what: `real Asterisk, ${count(size)} extensions: ${op.split(' (')[0]}, push → applied (median of ${xs.length})`, limit, unit: 'ms' }, value);
        checks.push(c);
        budget = `< ${limit}`;
        result = verdict(c);
      }
      const statuses = [...new Set(xs.map((o) => o.status))].join(',');
      opRows.push([
        count(size),
        op,
        statuses,
        [...new Set([...xs.flatMap((o) => o.reloads), ...(xs.some((o) => o.liveObjectEdits > 0) ? ['live objects'] : [])])].join(',') || '-',
        med(xs.map((o) => o.pushMs)),
        med(applied),
        med(xs.map((o) => o.durationMs)),
        ...STAGES.map((s) => med(xs.map((o) => o.stages[s] ?? NaN))),
        med(xs.map((o) => o.waitedMs)),
        med(xs.map((o) => o.appliedMs - o.durationMs)),
        `${xs[0]!.seenLabel} ${med(xs.map((o) => o.seenMs))}`,
        budget,
        result,
      ]);
    }
  }
  const opTable: Table = {
    title: `Through the daemon on a push with webhook: one extension at a time (median of ${CYCLES} cycles of add → rename → ring time → fold → remove → fold)`,
    columns: [
      { header: 'extensions' },
      { header: 'change', align: 'left' },
      { header: 'status', align: 'left' },
      { header: 'reloads', align: 'left' },
      { header: 'git push ms' },
      { header: 'push→applied ms' },
      { header: 'agent ms' },
      ...STAGES.map((s) => ({ header: s })),
      { header: 'waited' },
      { header: 'outside ms' },
      { header: 'push→user sees ms', align: 'left' as const },
      { header: 'budget ms' },
      { header: 'result', align: 'left' },
    ],
    rows: opRows,
    notes: [
      'push→applied: from the webhook POST (sent right after `git push` returned) to the journal timestamp of the reconcile.finished line of that commit, which the agent logs after its own verify.',
      'agent ms: that line\'s durationMs (the reconcile, from render on); fetch … record: its stages (fetch: the git fetch before the reconcile, checkout: the checkout of the fetched commit; save: last-known-good and pending written; record: the state file); waited: its trigger.waitedMs (behind a run in progress); outside: push→applied − agent ms (webhook, waiting, git fetch, the state file, logging).',
      'reloads: modules reloaded; live objects: res_pjsip changed through astdb/ARI instead (README, Live objects). The removal comes after a fold, so it locks out an extension pjsip.conf defined.',
      'push→user sees: registrable = sipp REGISTER with the password gets 200; seen = `pjsip show endpoint` shows the new callerid / `dialplan show` the new ring time;',
      `gone = REGISTER with the right password is refused with 401. Probes start with the webhook and are retried (sipp: ${SIPP_PAUSE_MS} ms pause, asterisk -rx: ${CLI_PAUSE_MS} ms)`,
      `until ${PROBE_GRACE_MS / 1000} s after the agent's run ended; they compete for the CPUs with the reconcile they wait for; their resolution is one try.`,
      `Budgets (issue 12): < ${BUDGET_10K_MS} ms at 10,000 and < ${BUDGET_1K_MS} ms at 1,000, on push → applied.`,
      ...(SIZES.length === 1 ? ['10,000 extensions: not measured in this run (PBX_BENCH_REAL_SIZES=1000); its budgets are unchecked.'] : []),
    ],
  };

  const noopTable: Table = {
    title: `No-op: a push that changes nothing managed (a README commit), ${NOOP_RUNS} runs at each size`,
    columns: [
      { header: 'extensions' },
      { header: 'status', align: 'left' },
      { header: 'agent ms (median)' },
      { header: 'push→finished ms' },
      { header: 'reloads', align: 'left' },
      { header: 'changedFiles', align: 'left' },
      { header: 'managed files', align: 'left' },
      { header: 'Asterisk last reload', align: 'left' },
      { header: 'AMI actions Asterisk logged', align: 'left' },
      { header: 'result', align: 'left' },
    ],
    rows: r.noops.map((x) => {
      const forbidden = x.actions ? Object.entries(x.actions).filter(([a]) => a === 'reload' || a.startsWith('dialplanextension') || a === 'updateconfig' || a === 'moduleload') : [];
      const pass =
        x.statuses.every((s) => s === 'unchanged') && x.reloads.length === 0 && x.changedFiles.length === 0 && x.filesUnchanged && x.lastReloadUnchanged && forbidden.length === 0;
      checks.push({ what: `real Asterisk, ${count(x.size)} extensions: a no-op push writes nothing and reloads nothing`, limit: 1, unit: 'violations', actual: pass ? 0 : 1, pass });
      return [
        count(x.size),
        [...new Set(x.statuses)].join(','),
        med(x.durations),
        med(x.appliedMs),
        JSON.stringify(x.reloads),
        JSON.stringify(x.changedFiles),
        x.filesUnchanged ? 'mtimes unchanged' : 'WRITTEN',
        x.lastReloadUnchanged ? 'unchanged' : 'CHANGED',
        x.actions ? Object.entries(x.actions).map(([a, k]) => `${a}×${k}`).join(' ') || 'none' : 'not observed',
        pass ? 'PASS' : 'OVER',
      ];
    }),
    notes: [
      'reloads / changedFiles: from the runs\' reconcile.finished lines; managed files: find -printf %T@ over /etc/asterisk/pbx-agent before and after;',
      'Asterisk last reload: `core show uptime seconds`; AMI actions: what Asterisk logged with `manager set debug on` during the runs (every client, every action;',
      'the agent\'s keepalive pings included). Reload, DialplanExtension*, UpdateConfig or ModuleLoad there fails the check.',
      ...r.noops.filter((x) => x.amiNote).map((x) => `${count(x.size)}: ${x.amiNote}`),
    ],
  };

  const memTable: Table = {
    title: 'Daemon memory after the runs above (the unit\'s process; /proc/PID/status)',
    columns: [
      { header: 'extensions' },
      { header: 'VmRSS MB' },
      { header: 'anon MB' },
      { header: 'file MB' },
      { header: 'peak (VmHWM) MB' },
      { header: 'MemoryCurrent', align: 'left' },
      { header: 'asterisk VmRSS MB' },
      { header: 'budget MB' },
      { header: 'result', align: 'left' },
    ],
    rows: r.memory.map((x) => {
      const limit = RSS_BUDGET_MB[x.size]!;
      const c = check({ what: `real Asterisk: daemon RSS at ${count(x.size)} extensions`, limit, unit: 'MB' }, x.rss);
      checks.push(c);
      return [count(x.size), mb(x.rss), mb(x.anon), mb(x.file), mb(x.hwm), x.memoryCurrent, mb(x.asteriskRss), `< ${limit}`, verdict(c)];
    }),
    notes: [
      'MemoryCurrent: systemctl show (the cgroup\'s memory; on a cgroup-v1 host the container\'s controllers may not account it).',
      'The 10,000 row is the same daemon after the 1,000 runs and the push of 9,000 more extensions.',
      `RSS: after the no-op pushes, ${RSS_READ_NOTE}.`,
    ],
  };

  const foldTable: Table = {
    title: 'Folding live objects into pjsip.conf: in the background, 30 s (fold_after_seconds) after the last change, one per cycle after the ring-time change and one after the removal',
    columns: [{ header: 'extensions' }, { header: 'folds' }, { header: 'median ms' }, { header: 'min ms' }, { header: 'max ms' }, { header: 'objects per fold', align: 'left' }],
    rows: [...new Set(r.folds.map((f) => f.size))].map((size) => {
      const xs = r.folds.filter((f) => f.size === size);
      const t = xs.map((f) => f.ms);
      return [count(size), String(xs.length), ms(median(t)), ms(Math.min(...t)), ms(Math.max(...t)), [...new Set(xs.map((f) => `${f.added} added, ${f.changed} changed, ${f.removed} removed`))].join('; ')];
    }),
    notes: ['ms: live.folded\'s: the res_pjsip reload, then DBDelTree of the family, then the folded extensions read back. A push that arrives meanwhile waits for it.'],
  };
  const tables = [setup, reloadTable, opTable, foldTable, noopTable, memTable];
  if (r.agentErrors.length > 0) {
    const byEvent = new Map<string, JournalLine[]>();
    for (const l of r.agentErrors) byEvent.set(`${String(l.event.level)} ${String(l.event.event)}`, [...(byEvent.get(`${String(l.event.level)} ${String(l.event.event)}`) ?? []), l]);
    tables.push({
      title: 'Warnings and errors the agent logged during the section (journal), by event',
      columns: [{ header: 'level event', align: 'left' }, { header: 'lines' }, { header: 'first message', align: 'left' }],
      rows: [...byEvent].map(([k, ls]) => [k, String(ls.length), String(ls[0]!.event.msg ?? '').slice(0, 140)]),
    });
  }
  return { tables, checks };
}

export const realAsteriskSection: BenchSection = {
  id: 'real-asterisk',
  name: 'the real Asterisk: module reloads, push → applied at 1,000 and 10,000 extensions, no-op, memory',
  run,
};
