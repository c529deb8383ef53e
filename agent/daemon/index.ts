/**
 * The long-running agent: triggers (schedule, push webhook, SIGHUP, local edits) → one reconcile
 * at a time (fetch → reconcile) → state and logs; drift watchers beside it.
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import path from 'node:path';
import { watch as watchFiles, type FSWatcher } from 'chokidar';
import { schedule, validate as validCron, type ScheduledTask } from 'node-cron';
import type { AgentSettingsData } from '../../schemas/agent-settings.js';
import { AmiClient } from '../asterisk/ami.js';
import { amiControl, type AsteriskControl } from '../asterisk/control.js';
import { readManagerExposure } from '../asterisk/manager-conf.js';
import { cloudDesiredFrom, CloudMonitor } from '../cloud/index.js';
import { findAsteriskDrift } from '../drift/asterisk.js';
import { loadDesiredState, readConfigRepo } from '../load/index.js';
import { compareManagedFile, watchManagedFiles } from '../drift/files.js';
import { DriftReporter } from '../drift/reporter.js';
import { logEvent, type Logger } from '../log.js';
import { reconcile, type ReconcileDeps, type ReconcileOutcome } from '../reconcile.js';
import { StateStore, type AgentState } from '../record/state.js';
import { MANAGED_FILES, splitManagedText } from '../managed-files.js';
import { readSecretFile } from '../resolve/index.js';
import { gitSourceFrom, reconcileDeps, StartupError } from '../runtime.js';
import type { GitSource } from '../source/git.js';
import { describeMismatches } from '../verify/index.js';
import { HeapTrimmer } from './heap.js';
import { acquireLock } from './lock.js';
import { SyncRunner, type TriggerReason } from './runner.js';
import { PID_FILE } from './status.js';
import { startWebhookServer } from './webhook.js';

export const LOCK_FILE = 'reconcile.lock';

/** One sync: fetch the config repo, then reconcile. Used by the daemon and by `pbx-agent sync`. */
export async function syncOnce(
  settings: AgentSettingsData,
  deps: ReconcileDeps,
  source: GitSource,
  log: Logger,
  reason: TriggerReason,
  signal?: AbortSignal,
): Promise<{ ok: boolean; outcome?: ReconcileOutcome; dir?: string }> {
  const release = await acquireLock(path.join(settings.state_dir, LOCK_FILE), 10 * 60_000);
  try {
    const state = await deps.state.read();
    const fetched = await source.fetch(state.applied?.commit, signal);
    if (!fetched.ok) {
      // A run that could not even fetch is a failed run: `status` must count it like any other.
      const at = new Date().toISOString();
      const lastRun = { at, status: 'failed' as const, revision: state.applied?.revision ?? 'none', durationMs: 0, error: fetched.message };
      await deps.state.write({
        ...state,
        lastRun,
        consecutiveFailures: state.consecutiveFailures + 1,
        ...(fetched.kind !== 'unreachable' ? { sourceRejected: { ...(fetched.commit ? { commit: fetched.commit } : {}), reason: fetched.message, at } } : {}),
      });
      const event = fetched.kind === 'unreachable' ? 'source.unreachable' : 'source.rejected';
      logEvent(log, 'error', event, { reason, commit: fetched.commit, applied: fetched.applied }, fetched.message);
      return { ok: false };
    }
    if (state.sourceRejected) {
      const { sourceRejected: _gone, ...rest } = state;
      await deps.state.write(rest);
    }
    const outcome = await reconcile(deps, { dir: fetched.dir, revision: fetched.revision, ...(fetched.commit ? { commit: fetched.commit } : {}) });
    const ok = outcome.status === 'applied' || outcome.status === 'unchanged';
    return { ok, outcome, dir: fetched.dir };
  } finally {
    await release();
  }
}

/** Tells systemd the service is up (Type=notify, NotifyAccess=all: systemd-notify is our child). */
function notifySystemd(status: string, log: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`, `--status=${status}`], { stdio: 'ignore' });
  child.on('error', (e) => logEvent(log, 'warn', 'daemon.notify_failed', {}, `systemd-notify: ${e.message}`));
}

export class Daemon {
  private readonly state: StateStore;
  private readonly client: AmiClient;
  private readonly asterisk: AsteriskControl;
  private readonly source: GitSource;
  private readonly runner: SyncRunner;
  private readonly drift: DriftReporter;
  private readonly abort = new AbortController();
  private readonly heap = new HeapTrimmer();
  private deps: ReconcileDeps | undefined;
  private tasks: ScheduledTask[] = [];
  private webhook: Server | undefined;
  private watchers: FSWatcher[] = [];
  /** The managed files as last applied and verified: what drift is measured against. */
  private expected = new Map<string, string | undefined>();
  private readyNotified = false;
  private readonly cloud: CloudMonitor | undefined;
  /** An Elastic IP adopted over an explicit external_address (cloud.eip_policy: adopt). */
  private adopted: string | undefined;
  /** Where the last fetched config repo is, for the cloud checks' view of the desired state. */
  private lastSourceDir: string | undefined;
  private stopping = false;
  private connectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly settings: AgentSettingsData,
    private readonly log: Logger,
    amiSecret: string,
  ) {
    if (!settings.source) throw new StartupError('settings.invalid', 'the daemon needs a source: set source.url in the settings file');
    this.state = new StateStore(settings.state_dir);
    const ami = settings.asterisk.ami;
    this.client = new AmiClient({
      host: ami.host,
      port: ami.port,
      username: ami.username,
      secret: amiSecret,
      connectTimeoutMs: ami.connect_timeout_seconds * 1000,
      actionTimeoutMs: ami.action_timeout_seconds * 1000,
      keepaliveMs: 30_000,
    });
    this.asterisk = amiControl(this.client);
    this.source = gitSourceFrom(settings);
    this.runner = new SyncRunner((reason) => this.syncJob(reason), {
      backoffBaseMs: settings.schedule.backoff_base_seconds * 1000,
      backoffMaxMs: settings.schedule.backoff_max_seconds * 1000,
      quietMs: 200,
      maxWaitMs: 2000,
    }, (reason, retryInMs) => logEvent(log, 'debug', 'sync.backoff', { reason, retryInMs }, 'skipped: backing off after a failed run'));
    this.drift = new DriftReporter(settings.cloud.reminder_minutes * 60_000);
    this.cloud = settings.cloud.enabled ? new CloudMonitor({ settings: settings.cloud }, log) : undefined;
  }

  static async create(settings: AgentSettingsData, log: Logger): Promise<Daemon> {
    for (const [name, expr] of Object.entries(settings.schedule)) {
      if (typeof expr === 'string' && !validCron(expr)) throw new StartupError('settings.invalid', `schedule.${name}: "${expr}" is not a valid cron expression`);
    }
    const secret = await readSecretFile(settings.asterisk.ami.secret_file);
    if ('problem' in secret) throw new StartupError('ami.secret', `AMI secret: ${secret.problem}`);
    return new Daemon(settings, log, secret.value);
  }

  async start(): Promise<void> {
    const { settings, log } = this;
    await mkdir(settings.state_dir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(settings.state_dir, PID_FILE), `${process.pid}\n`, { mode: 0o644 });
    const exposure = await readManagerExposure(settings.asterisk.config_dir);
    if (exposure?.exposed) {
      logEvent(log, 'warn', 'ami.exposed', { bindaddr: exposure.bindaddr, port: exposure.port }, `AMI listens on ${exposure.bindaddr}:${exposure.port}; set bindaddr = 127.0.0.1 in manager.conf`);
    }
    this.deps = await reconcileDeps(settings, this.asterisk, log, {
      ...(this.cloud ? { elasticIp: () => this.cloud!.elasticIp() } : {}),
      adoptedAddress: () => this.adopted,
    });
    await this.loadExpected();

    process.on('SIGHUP', this.onHup);
    process.on('SIGTERM', this.onTerm);
    process.on('SIGINT', this.onTerm);

    this.tasks.push(schedule(settings.schedule.sync, () => this.runner.request('schedule'), { name: 'sync' }));
    this.tasks.push(schedule(settings.schedule.drift, () => void this.checkAsteriskDrift(), { name: 'drift' }));
    if (this.cloud) this.tasks.push(schedule(settings.schedule.cloud, () => void this.checkCloud(), { name: 'cloud' }));

    if (settings.webhook) await this.startWebhook(settings.webhook);
    await this.startWatchers();

    logEvent(log, 'info', 'daemon.started', {
      pid: process.pid,
      source: this.source.localPath ? settings.source!.url : redactUrl(settings.source!.url),
      branch: settings.source!.ref ?? settings.source!.branch,
      webhook: settings.webhook?.listen,
      schedule: settings.schedule,
    }, 'pbx-agent daemon started');

    await this.connectAsterisk();
    this.runner.request('startup');
  }

  private async connectAsterisk(): Promise<void> {
    if (this.stopping) return;
    try {
      await this.client.connect();
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'ami.unreachable';
      logEvent(this.log, 'error', code === 'ami.auth_failed' ? 'ami.auth_failed' : 'ami.unreachable', {}, `${(e as Error).message}; retrying in 10 s`);
      this.connectTimer = setTimeout(() => void this.connectAsterisk().then(() => this.runner.request('retry')), 10_000);
    }
  }

  private async syncJob(reason: TriggerReason): Promise<{ ok: boolean }> {
    if (!this.client.connected) {
      const result = { ok: false };
      logEvent(this.log, 'warn', 'reconcile.failed', { reason }, 'Asterisk Manager is not connected; will retry');
      this.notifyReady('waiting for Asterisk');
      return result;
    }
    try {
      const result = await syncOnce(this.settings, this.deps!, this.source, this.log, reason, this.abort.signal);
      if (result.dir) this.lastSourceDir = result.dir;
      // Addresses or ports may have changed: check the cloud side right away (and at start).
      const cloudDue = !this.cloudChecked || (result.outcome?.changedFiles.length ?? 0) > 0;
      // What the run left on disk, as the run knows it: re-reading the disk here could pick up a
      // hand edit made a moment after the run and take it for the expected text.
      if (result.outcome?.liveFiles && result.outcome.status !== 'failed') this.expected = new Map(result.outcome.liveFiles);
      if (cloudDue && result.dir) setImmediate(() => void this.checkCloud());
      return result;
    } catch (e) {
      logEvent(this.log, 'error', 'reconcile.failed', { reason }, (e as Error).message);
      return { ok: false };
    } finally {
      this.notifyReady('first reconcile attempted');
      this.heap.afterRun();
    }
  }

  private notifyReady(status: string): void {
    if (this.readyNotified) return;
    this.readyNotified = true;
    notifySystemd(status, this.log);
  }

  /** At start: the managed files as they are on disk (what the last run left). */
  private async loadExpected(): Promise<void> {
    const next = new Map<string, string | undefined>();
    for (const spec of MANAGED_FILES) {
      next.set(spec.path, await readFile(path.join(this.settings.asterisk.config_dir, spec.path), 'utf8').catch(() => undefined));
    }
    this.expected = next;
  }

  private async onManagedFileEvent(rel: string): Promise<void> {
    if (this.runner.busy) return; // our own writes; the expected texts are refreshed after the run
    const actual = await readFile(path.join(this.settings.asterisk.config_dir, rel), 'utf8').catch(() => undefined);
    const drift = compareManagedFile(rel, this.expected.get(rel), actual);
    const decision = this.drift.observe(`file:${rel}`, drift ? drift.diff : undefined);
    await this.recordDrift(`file:${rel}`, drift ? `${rel} ${drift.kind} by hand` : undefined);
    if (!drift) return;
    const restore = this.settings.drift.file_policy === 'restore';
    if (decision.log !== 'none') {
      logEvent(this.log, 'warn', 'drift.file', { file: rel, kind: drift.kind, diff: drift.diff, action: restore ? 'restore' : 'alert' },
        restore ? `${rel} was changed by hand; putting the managed version back` : `${rel} was changed by hand; it will be overwritten by the next change from git`);
    }
    if (restore) this.runner.request('drift');
  }

  private async checkAsteriskDrift(): Promise<void> {
    if (this.runner.busy || !this.client.connected) return;
    const pjsip = this.expected.get('pbx-agent/pjsip.conf');
    const rtp = this.expected.get('pbx-agent/rtp.conf');
    if (pjsip === undefined || rtp === undefined) return;
    try {
      const mismatches = await findAsteriskDrift(this.asterisk, splitManagedText(pjsip).body, splitManagedText(rtp).body);
      const summary = mismatches.length ? describeMismatches(mismatches) : undefined;
      const decision = this.drift.observe('asterisk', summary);
      await this.recordDrift('asterisk', summary);
      if (decision.log === 'resolved') logEvent(this.log, 'info', 'drift.resolved', { kind: 'asterisk' }, 'live Asterisk state matches the desired state again');
      else if (decision.log !== 'none') {
        logEvent(this.log, 'warn', 'drift.asterisk', { mismatches: mismatches.slice(0, 20), count: mismatches.length, action: 'alert' },
          `live Asterisk state differs from the applied configuration: ${summary}`);
      }
    } catch (e) {
      logEvent(this.log, 'debug', 'drift.check_failed', {}, (e as Error).message);
    }
  }

  private cloudChecked = false;

  /**
   * The cloud checks against the desired state of the last fetched config (external_address as
   * written, "auto" included). Acts on the Elastic IP decision: under `auto` a changed Elastic IP
   * is picked up by a new reconcile; under eip_policy adopt it replaces the explicit address.
   */
  private async checkCloud(): Promise<void> {
    if (!this.cloud || !this.lastSourceDir || this.stopping) return;
    this.cloudChecked = true;
    try {
      const loaded = loadDesiredState(await readConfigRepo(this.lastSourceDir));
      if (!loaded.state) return;
      const pjsip = this.expected.get('pbx-agent/pjsip.conf');
      const live = pjsip ? /^external_media_address=(.+)$/m.exec(pjsip)?.[1] : undefined;
      const report = await this.cloud.check(
        cloudDesiredFrom(loaded.state, { amiPort: this.settings.asterisk.ami.port, ...(live ? { liveExternalAddress: live } : {}) }),
      );
      const decision = report.decision;
      if (decision.action === 'adopt') {
        if (decision.overridesConfig) this.adopted = decision.address;
        this.runner.request('drift');
      } else if (decision.action === 'none' && this.adopted !== undefined && live === this.adopted) {
        // The config names the Elastic IP again (or it moved back): nothing to override.
        if (loaded.state.network.externalAddress === this.adopted) this.adopted = undefined;
      }
    } catch (e) {
      logEvent(this.log, 'error', 'cloud.error', {}, `cloud checks failed: ${(e as Error).message}`);
    }
  }

  private async recordDrift(key: string, message: string | undefined): Promise<void> {
    const state: AgentState = await this.state.read();
    const drift = { ...(state.drift ?? {}) };
    if (message === undefined) {
      if (!(key in drift)) return;
      delete drift[key];
    } else {
      if (drift[key]?.message === message) return;
      drift[key] = { message, since: drift[key]?.since ?? new Date().toISOString() };
    }
    await this.state.write({ ...state, drift });
  }

  private async startWebhook(webhook: NonNullable<AgentSettingsData['webhook']>): Promise<void> {
    const secret = await readSecretFile(webhook.secret_file);
    if ('problem' in secret) throw new StartupError('webhook.secret', `webhook secret: ${secret.problem}`);
    const at = webhook.listen.lastIndexOf(':');
    const host = webhook.listen.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(webhook.listen.slice(at + 1));
    this.webhook = await startWebhookServer({
      host,
      port,
      secret: secret.value,
      maxBodyBytes: webhook.max_body_bytes,
      branch: this.settings.source!.branch,
      onPush: ({ provider, ref }) => {
        logEvent(this.log, 'info', 'webhook.push', { provider, ref }, 'push received; syncing');
        this.runner.request('webhook');
      },
      onRejected: ({ reason, remote }) => logEvent(this.log, 'warn', 'webhook.rejected', { reason, remote }, 'webhook request refused (401)'),
    });
  }

  private async startWatchers(): Promise<void> {
    const { settings } = this;
    // Watch the managed directory even before the first write creates it.
    await mkdir(path.join(settings.asterisk.config_dir, 'pbx-agent'), { recursive: true, mode: 0o750 });
    this.watchers.push(
      await watchManagedFiles(settings.asterisk.config_dir, MANAGED_FILES.map((f) => f.path), (rel) => void this.onManagedFileEvent(rel)),
    );
    if (this.source.localPath) {
      // Local-path mode: an edit in the config repo re-renders at once.
      const watcher = watchFiles(settings.source!.url, {
        ignoreInitial: true,
        ignored: (p: string) => p.split(path.sep).includes('.git'),
        awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
      });
      watcher.on('all', () => this.runner.request('file'));
      await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
      this.watchers.push(watcher);
    }
  }

  private readonly onHup = () => {
    logEvent(this.log, 'info', 'daemon.sighup', {}, 'SIGHUP: syncing now');
    this.runner.request('signal');
  };

  private readonly onTerm = (signal: NodeJS.Signals) => {
    void this.stop(signal).then(() => process.exit(0));
  };

  /** Stops taking triggers, lets the run in progress (write, reload, verify) finish, then closes. */
  async stop(signal: string = 'stop'): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    logEvent(this.log, 'info', 'daemon.stopping', { signal, busy: this.runner.busy }, this.runner.busy ? 'finishing the reconcile in progress, then exiting' : 'exiting');
    clearTimeout(this.connectTimer);
    // A fetch in progress may be cut; a write+reload+verify in progress is waited for below.
    this.abort.abort();
    for (const t of this.tasks) await t.stop();
    await new Promise<void>((resolve) => (this.webhook ? this.webhook.close(() => resolve()) : resolve()));
    this.webhook?.closeAllConnections();
    await Promise.all(this.watchers.map((w) => w.close()));
    await this.runner.stop();
    await this.client.close().catch(() => undefined);
    process.off('SIGHUP', this.onHup);
    process.off('SIGTERM', this.onTerm);
    process.off('SIGINT', this.onTerm);
    await rm(path.join(this.settings.state_dir, PID_FILE), { force: true });
    logEvent(this.log, 'info', 'daemon.stopped', { signal }, 'pbx-agent daemon stopped');
  }

  /** Runner statistics, for tests and the benchmark. */
  get stats() {
    return this.runner.stats;
  }
}

/** Credentials in an https URL never reach the log. */
function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}
