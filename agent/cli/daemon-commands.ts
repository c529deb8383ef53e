/**
 * `pbx-agent run` (the daemon), `sync` (one fetch + reconcile now) and `status`.
 */
import { Daemon, syncOnce } from '../daemon/index.js';
import { assessHealth, formatStatus, runningDaemonPid } from '../daemon/status.js';
import { createLogger } from '../log.js';
import { readDrifts } from '../drift/recorder.js';
import { StateStore } from '../record/state.js';
import { gitSourceFrom, reconcileDeps, StartupError } from '../runtime.js';
import { withAsterisk } from './host-commands.js';
import { EXIT, settingsOrReport, type Io } from './output.js';

/** Runs until SIGTERM/SIGINT. */
export async function runCommand(opts: { settingsFile?: string }, io: Io): Promise<number> {
  const settings = await settingsOrReport(opts.settingsFile, io, true);
  if (!settings) return EXIT.invalidConfig;
  const log = createLogger(settings.log_level);
  try {
    const daemon = await Daemon.create(settings, log);
    await daemon.start();
  } catch (e) {
    if (!(e instanceof StartupError)) throw e;
    io.err(`run: ${e.message}`);
    return EXIT.failure;
  }
  // The daemon's timers, watchers and sockets keep the process alive; it exits on SIGTERM.
  return new Promise<number>(() => undefined);
}

export async function syncCommand(opts: { settingsFile?: string; json: boolean; allowMassRemoval?: boolean }, io: Io): Promise<number> {
  const settings = await settingsOrReport(opts.settingsFile, io, true);
  if (!settings) return EXIT.invalidConfig;
  if (!settings.source) {
    io.err('sync: the settings have no source.url; use `pbx-agent apply DIR` for a local directory');
    return EXIT.invalidConfig;
  }
  const log = createLogger(settings.log_level, process.stderr);
  return withAsterisk(settings, log, io, 'sync', async (control) => {
    const source = gitSourceFrom(settings);
    const deps = await reconcileDeps(settings, control, log);
    if (opts.allowMassRemoval) deps.options.allowMassRemoval = true;
    const result = await syncOnce(settings, deps, source, log, 'cli', {
      onWait: (pid) => io.err(`sync: waiting for the reconcile in progress (pid ${pid}) to finish`),
    });
    const o = result.outcome;
    const f = result.fetchFailure;
    if (opts.json) io.out(JSON.stringify(o ?? { status: 'failed', code: f?.kind === 'unreachable' ? 'source.unreachable' : 'source.rejected', error: f?.message }, null, 2));
    else if (o) io.out(`${o.status}: revision ${o.revision}${o.error ? `: ${o.error}` : ''}`);
    else if (f?.kind === 'unreachable') io.out(`failed: the config repo could not be fetched: ${f.message}`);
    else io.out(`refused: the config repo's newest commit was not applied: ${f?.message ?? 'see the log lines above'}`);
    if (o?.refusal && !opts.json) io.out(`Nothing was written or reloaded; ${o.refusal.fix}.`);
    if (o?.status === 'invalid' || o?.status === 'refused') return EXIT.invalidConfig;
    return result.ok ? EXIT.ok : EXIT.failure;
  });
}

export async function statusCommand(opts: { settingsFile?: string; json: boolean }, io: Io): Promise<number> {
  const settings = await settingsOrReport(opts.settingsFile, io, false);
  if (!settings) return EXIT.invalidConfig;
  const state = await new StateStore(settings.state_dir).read();
  const daemonPid = await runningDaemonPid(settings.state_dir);
  const drifts = await readDrifts(settings.state_dir);
  const health = assessHealth(state, { unhealthyAfterFailures: settings.unhealthy_after_failures, now: new Date(), daemonPid, drifts });
  if (opts.json) {
    const list = Object.entries(drifts).map(([key, d]) => ({ key, ...d }));
    io.out(JSON.stringify({ ...health, daemonPid: daemonPid ?? null, drifts: list, state }, null, 2));
  }
  else io.out(formatStatus(state, health, daemonPid));
  return health.healthy ? EXIT.ok : EXIT.failure;
}
