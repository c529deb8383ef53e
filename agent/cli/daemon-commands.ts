/**
 * `pbx-agent run` (the daemon), `sync` (one fetch + reconcile now) and `status`.
 */
import path from 'node:path';
import { Daemon, syncOnce } from '../daemon/index.js';
import { assessHealth, formatStatus, runningDaemonPid } from '../daemon/status.js';
import { createLogger } from '../log.js';
import { StateStore } from '../record/state.js';
import { connectAsterisk, reconcileDeps, StartupError } from '../runtime.js';
import { DEFAULT_SETTINGS_FILE, loadSettings } from '../settings.js';
import { GitSource } from '../source/git.js';
import { countLine, EXIT, printIssues, type Io } from './output.js';

async function settingsFrom(file: string | undefined, io: Io, mustExist: boolean) {
  const { settings, issues } = await loadSettings(file ?? DEFAULT_SETTINGS_FILE, { mustExist });
  if (!settings) {
    printIssues(io, issues);
    io.err(`settings: invalid: ${countLine(issues)}`);
  }
  return settings;
}

/** Runs until SIGTERM/SIGINT. */
export async function runCommand(opts: { settingsFile?: string }, io: Io): Promise<number> {
  const settings = await settingsFrom(opts.settingsFile, io, true);
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

export async function syncCommand(opts: { settingsFile?: string; json: boolean }, io: Io): Promise<number> {
  const settings = await settingsFrom(opts.settingsFile, io, true);
  if (!settings) return EXIT.invalidConfig;
  if (!settings.source) {
    io.err('sync: the settings have no source.url; use `pbx-agent apply DIR` for a local directory');
    return EXIT.invalidConfig;
  }
  const log = createLogger(settings.log_level, process.stderr);
  let connection;
  try {
    connection = await connectAsterisk(settings, log);
  } catch (e) {
    if (!(e instanceof StartupError)) throw e;
    io.err(`sync: ${e.message}`);
    return EXIT.failure;
  }
  try {
    const src = settings.source;
    const source = new GitSource({
      url: src.url,
      branch: src.branch,
      ...(src.ref ? { ref: src.ref } : {}),
      ...(src.ssh_key_file ? { sshKeyFile: src.ssh_key_file } : {}),
      knownHostsFile: src.known_hosts_file,
      allowHistoryRewrite: src.allow_history_rewrite,
      ...(src.allowed_signers_file ? { allowedSignersFile: src.allowed_signers_file } : {}),
      timeoutMs: src.timeout_seconds * 1000,
      workDir: path.join(settings.state_dir, 'repo'),
    });
    const deps = await reconcileDeps(settings, connection.control, log);
    const result = await syncOnce(settings, deps, source, log, 'cli');
    const o = result.outcome;
    if (opts.json) io.out(JSON.stringify(o ?? { status: 'failed', error: 'see the log lines on stderr' }, null, 2));
    else io.out(o ? `${o.status}: revision ${o.revision}${o.error ? `: ${o.error}` : ''}` : 'failed: the config repo could not be fetched (see the log lines above)');
    if (o?.status === 'invalid') return EXIT.invalidConfig;
    return result.ok ? EXIT.ok : EXIT.failure;
  } finally {
    await connection.client.close();
  }
}

export async function statusCommand(opts: { settingsFile?: string; json: boolean }, io: Io): Promise<number> {
  const settings = await settingsFrom(opts.settingsFile, io, false);
  if (!settings) return EXIT.invalidConfig;
  const state = await new StateStore(settings.state_dir).read();
  const daemonPid = await runningDaemonPid(settings.state_dir);
  const health = assessHealth(state, { unhealthyAfterFailures: settings.unhealthy_after_failures, now: new Date(), daemonPid });
  if (opts.json) io.out(JSON.stringify({ ...health, daemonPid: daemonPid ?? null, state }, null, 2));
  else io.out(formatStatus(state, health, daemonPid));
  return health.healthy ? EXIT.ok : EXIT.failure;
}
