/**
 * The long-running agent: triggers (schedule, push webhook, SIGHUP, local edits) → the runner
 * (one sync at a time: fetch → reconcile, under the reconcile lock) → state and logs. Drift
 * checks run beside it as plug-ins (plugins/): managed files, live Asterisk state, the cloud.
 * This file is the triggers and the life cycle; the work is elsewhere.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import path from 'node:path';
import { watch as watchFiles, type FSWatcher } from 'chokidar';
import { schedule, validate as validCron, type ScheduledTask } from 'node-cron';
import type { AgentSettingsData } from '../../schemas/agent-settings.js';
import { CloudMonitor } from '../cloud/index.js';
import { AppliedTexts } from '../drift/applied-texts.js';
import { DriftRecorder } from '../drift/recorder.js';
import { logEvent, type Logger } from '../log.js';
import { readManagedTexts } from '../managed-files.js';
import type { ReconcileDeps } from '../reconcile.js';
import { recordFailedRun, StateStore, type AgentState } from '../record/state.js';
import { compactRenderCaches } from '../render/index.js';
import { readSecretFile } from '../resolve/index.js';
import { AmiConnection, gitSourceFrom, readAriPassword, reconcileDeps, StartupError, warnIfAmiExposed } from '../runtime.js';
import { foldLiveObjects } from '../reload/fold.js';
import { withReconcileLock } from '../record/lock.js';
import type { GitSource } from '../source/git.js';
import { HeapTrimmer } from './heap.js';
import { AsteriskDriftPlugin } from './plugins/asterisk-drift.js';
import { CloudPlugin } from './plugins/cloud.js';
import { FileDriftPlugin } from './plugins/file-drift.js';
import type { DaemonContext, DaemonPlugin } from './plugins/plugin.js';
import { SyncRunner, type Trigger, type TriggerReason } from './runner.js';
import { PID_FILE } from './status.js';
import { syncOnce } from './sync.js';
import { RateLimitedLog, startWebhookServer } from './webhook.js';

export { syncOnce } from './sync.js';

/** While the config repo cannot be reached, a fetch is tried this often, whatever the backoff. */
const SOURCE_PROBE_MS = 10_000;

/** Tells systemd the service is up (Type=notify, NotifyAccess=all: systemd-notify is our child). */
function notifySystemd(status: string, log: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const child = spawn('systemd-notify', ['--ready', `--pid=${process.pid}`, `--status=${status}`], { stdio: 'ignore' });
  child.on('error', (e) => logEvent(log, 'warn', 'daemon.notify_failed', {}, `systemd-notify: ${e.message}`));
}

export class Daemon {
  private readonly state: StateStore;
  private readonly ami: AmiConnection;
  private readonly source: GitSource;
  private readonly runner: SyncRunner;
  private readonly drift: DriftRecorder;
  private readonly abort = new AbortController();
  private readonly heap = new HeapTrimmer();
  /** Fires once no run has come for live_objects.fold_after_seconds while live objects exist. */
  private foldTimer: NodeJS.Timeout | undefined;
  private readonly plugins: DaemonPlugin[] = [];
  private readonly cloud: CloudPlugin | undefined;
  private deps: ReconcileDeps | undefined;
  private tasks: ScheduledTask[] = [];
  private webhook: Server | undefined;
  private watchers: FSWatcher[] = [];
  /** The managed files as last applied and verified: what drift is measured against. */
  private readonly expected = new AppliedTexts();
  private readyNotified = false;
  /** An adoption asked for by the cloud checks, written into the state by the next run. */
  private adoption: { value: { address: string; previous?: string } | undefined } | undefined;
  private stopping = false;
  /** The applied network facts the cloud checks last saw (JSON): a run that changes them checks again. */
  private checkedNetwork: string | undefined;

  constructor(
    private readonly settings: AgentSettingsData,
    private readonly log: Logger,
    amiSecret: string,
    ariPassword?: string,
  ) {
    if (!settings.source) throw new StartupError('settings.invalid', 'the daemon needs a source: set source.url in the settings file');
    this.state = new StateStore(settings.state_dir);
    this.ami = new AmiConnection(settings, amiSecret, log, ariPassword);
    this.source = gitSourceFrom(settings);
    this.runner = new SyncRunner((reason, trigger) => this.syncJob(reason, trigger), {
      backoffBaseMs: settings.schedule.backoff_base_seconds * 1000,
      backoffMaxMs: settings.schedule.backoff_max_seconds * 1000,
    }, (reason, retryInMs) => logEvent(log, 'debug', 'sync.backoff', { reason, retryInMs }, 'skipped: backing off after a failed run'));
    const reminderMinutes = settings.drift.reminder_minutes ?? settings.cloud.reminder_minutes;
    this.drift = new DriftRecorder(settings.state_dir, reminderMinutes * 60_000);

    const ctx: DaemonContext = {
      settings,
      log,
      state: this.state,
      drift: this.drift,
      asterisk: this.ami.control,
      ami: this.ami.client,
      expected: () => this.expected,
      reconcileBusy: () => this.runner.busy,
      requestRun: (reason) => this.runner.request(reason),
      requestAdoption: (adoption) => {
        this.adoption = { value: adoption };
        this.runner.request('drift');
      },
    };
    this.plugins.push(new FileDriftPlugin(ctx), new AsteriskDriftPlugin(ctx));
    if (settings.cloud.enabled) {
      this.cloud = new CloudPlugin(ctx, new CloudMonitor({ settings: { ...settings.cloud, reminder_minutes: reminderMinutes } }, log));
      this.plugins.push(this.cloud);
    }
  }

  static async create(settings: AgentSettingsData, log: Logger): Promise<Daemon> {
    for (const [name, expr] of Object.entries(settings.schedule)) {
      if (typeof expr === 'string' && !validCron(expr)) throw new StartupError('settings.invalid', `schedule.${name}: "${expr}" is not a valid cron expression`);
    }
    const secret = await readSecretFile(settings.asterisk.ami.secret_file);
    if ('problem' in secret) throw new StartupError('ami.secret', `AMI secret: ${secret.problem}`);
    return new Daemon(settings, log, secret.value, await readAriPassword(settings));
  }

  async start(): Promise<void> {
    const { settings, log } = this;
    await mkdir(settings.state_dir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(settings.state_dir, PID_FILE), `${process.pid}\n`, { mode: 0o644 });
    await warnIfAmiExposed(settings.asterisk.config_dir, log);
    this.deps = await reconcileDeps(settings, this.ami.control, log, {
      ...(this.cloud ? { elasticIp: () => this.cloud!.monitor.elasticIp() } : {}),
    });
    // What the last run left on disk is what drift is measured against until the next run.
    void this.expected.replace(await readManagedTexts(settings.asterisk.config_dir));
    await this.drift.load();
    const applied = (await this.state.read()).applied?.network;
    this.checkedNetwork = applied && JSON.stringify(applied);

    process.on('SIGHUP', this.onHup);
    process.on('SIGTERM', this.onTerm);
    process.on('SIGINT', this.onTerm);

    this.tasks.push(schedule(settings.schedule.sync, () => this.runner.request('schedule'), { name: 'sync' }));
    if (settings.webhook) await this.startWebhook(settings.webhook);
    if (this.source.localPath) await this.watchLocalRepo();
    for (const p of this.plugins) await p.start();

    logEvent(log, 'info', 'daemon.started', {
      pid: process.pid,
      source: this.source.localPath ? settings.source!.url : redactUrl(settings.source!.url),
      branch: settings.source!.ref ?? settings.source!.branch,
      webhook: settings.webhook?.listen,
      schedule: settings.schedule,
    }, 'pbx-agent daemon started');

    // Asterisk may still be starting: the first run waits for no connection; a run without one
    // is recorded as failed (ami.unreachable) and retried when the connection comes up.
    this.ami.keepConnecting(() => this.runner.request('retry'));
    await this.ami.firstAttempt();
    this.runner.request('startup');
  }

  private async syncJob(reason: TriggerReason, trigger: Trigger): Promise<{ ok: boolean; retryInMs?: number }> {
    this.heap.runStarting();
    let applied = false;
    try {
      if (reason === 'fold') {
        const result = await withReconcileLock(this.settings.state_dir, undefined, () => foldLiveObjects(this.deps!, this.foldAfterMs));
        if (typeof result === 'object') this.setFoldTimer(result.notYet);
        return { ok: result !== 'failed' };
      }
      if (!this.ami.client.connected) {
        const message = `Asterisk Manager is not connected (${this.ami.lastError ?? 'connecting'}); nothing can be applied until it is`;
        logEvent(this.log, 'error', 'ami.unreachable', { reason }, message);
        await recordFailedRun(this.state, { code: 'ami.unreachable', error: message, at: new Date() });
        return { ok: false };
      }
      const adoption = this.adoption;
      this.adoption = undefined;
      const result = await syncOnce(this.settings, this.deps!, this.source, this.log, reason, {
        signal: this.abort.signal,
        trigger,
        ...(adoption ? { amendState: (state: AgentState) => withAdoption(state, adoption.value) } : {}),
      });
      // What the run left on disk, as the run knows it: re-reading the disk here could pick up a
      // hand edit made a moment after the run and take it for the expected text.
      // A failed run counts too: a change it left pending was written by the agent, not by hand.
      const outcome = result.outcome;
      applied = outcome?.status === 'applied';
      void compactRenderCaches();
      if (outcome?.liveFiles) void this.expected.replace(outcome.liveFiles);
      else if (outcome?.status === 'failed') void this.expected.replace(await readManagedTexts(this.settings.asterisk.config_dir));
      // The address or the ports Asterisk has changed: the cloud side is checked again right away.
      // Not after every change: a check starts a Node.js worker with the AWS SDK (a few hundred ms
      // of CPU), and an extension changes nothing the checks compare.
      const network = outcome?.appliedNetwork && JSON.stringify(outcome.appliedNetwork);
      if (network !== undefined && network !== this.checkedNetwork) {
        this.checkedNetwork = network;
        setImmediate(() => void this.cloud?.run());
      }
      // A repo that cannot be reached is probed sooner than the backoff would: a fetch that
      // fails costs little, and convergence should not wait minutes once it is back.
      return result.fetchFailure?.kind === 'unreachable' ? { ok: false, retryInMs: SOURCE_PROBE_MS } : { ok: result.ok };
    } catch (e) {
      logEvent(this.log, 'error', 'reconcile.failed', { reason }, (e as Error).message);
      return { ok: false };
    } finally {
      this.notifyReady('first reconcile attempted');
      this.heap.runEnded();
      await this.armFold(applied);
    }
  }

  /**
   * Live objects wait to be folded into pjsip.conf until changes have stopped coming
   * (reload/fold.ts): each applied change starts the quiet time again; runs that change nothing
   * (the schedule's) do not, or a fold_after_seconds longer than the sync interval would never end.
   */
  private async armFold(applied: boolean): Promise<void> {
    if (this.stopping) return;
    const state = await this.state.read().catch(() => undefined);
    if (!state?.live) {
      this.setFoldTimer(undefined);
      return;
    }
    if (this.foldTimer && !applied) return;
    // The fold itself checks the quiet time against the state (the last live write may be a
    // CLI run's), and asks for the rest if the timer was early.
    this.setFoldTimer(this.foldAfterMs);
  }

  private get foldAfterMs(): number {
    return this.settings.asterisk.live_objects.fold_after_seconds * 1000;
  }

  /** One fold timer at most: `delayMs` undefined clears it. */
  private setFoldTimer(delayMs: number | undefined): void {
    clearTimeout(this.foldTimer);
    this.foldTimer = undefined;
    if (delayMs === undefined || this.stopping) return;
    const timer = setTimeout(() => {
      if (this.foldTimer === timer) this.foldTimer = undefined;
      this.runner.request('fold');
    }, delayMs);
    this.foldTimer = timer;
  }

  private notifyReady(status: string): void {
    if (this.readyNotified) return;
    this.readyNotified = true;
    notifySystemd(status, this.log);
  }

  private async startWebhook(webhook: NonNullable<AgentSettingsData['webhook']>): Promise<void> {
    const secret = await readSecretFile(webhook.secret_file);
    if ('problem' in secret) throw new StartupError('webhook.secret', `webhook secret: ${secret.problem}`);
    const at = webhook.listen.lastIndexOf(':');
    const host = webhook.listen.slice(0, at).replace(/^\[|\]$/g, '');
    const port = Number(webhook.listen.slice(at + 1));
    // Every refused request is answered 401; the log says so at most once a minute per burst.
    const rejected = new RateLimitedLog(60_000);
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
      onRejected: ({ reason, remote }) =>
        rejected.note((suppressed) => logEvent(this.log, 'warn', 'webhook.rejected', { reason, remote, ...(suppressed ? { suppressed } : {}) },
          suppressed ? `webhook request refused (401); ${suppressed} more were refused since the last line` : 'webhook request refused (401)')),
    });
  }

  /** Local-path mode: an edit in the config repo re-renders at once. */
  private async watchLocalRepo(): Promise<void> {
    const watcher = watchFiles(this.settings.source!.url, {
      ignoreInitial: true,
      ignored: (p: string) => p.split(path.sep).includes('.git'),
      awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
    });
    watcher.on('all', () => this.runner.request('file'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.watchers.push(watcher);
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
    this.setFoldTimer(undefined);
    logEvent(this.log, 'info', 'daemon.stopping', { signal, busy: this.runner.busy }, this.runner.busy ? 'finishing the reconcile in progress, then exiting' : 'exiting');
    // A fetch in progress may be cut; a write+reload+verify in progress is waited for below.
    this.abort.abort();
    for (const t of this.tasks) await t.stop();
    await new Promise<void>((resolve) => (this.webhook ? this.webhook.close(() => resolve()) : resolve()));
    this.webhook?.closeAllConnections();
    await Promise.all(this.watchers.map((w) => w.close()));
    await Promise.all(this.plugins.map((p) => p.stop()));
    await this.runner.stop();
    this.heap.runStarting();
    await this.ami.close();
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

/** The state with `adoption` recorded (or an earlier one dropped); the same object when nothing changes. */
function withAdoption(state: AgentState, adoption: { address: string; previous?: string } | undefined): AgentState {
  if (adoption === undefined) {
    if (!state.adopted) return state;
    const { adopted: _dropped, ...rest } = state;
    return rest;
  }
  if (state.adopted?.address === adoption.address) return state;
  return { ...state, adopted: { ...adoption, at: new Date().toISOString() } };
}

/** Credentials in an https URL never reach the log. */
function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}
