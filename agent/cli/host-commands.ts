/**
 * Commands that work against the Asterisk on this host, with the agent's settings:
 * `plan` (read-only) and `apply` (one reconcile from a local config repo).
 */
import { DirectoryFileStore } from '../apply/files.js';
import { readManagedFiles } from '../apply/index.js';
import { formatIssue, type ConfigIssue } from '../load/issues.js';
import type { AgentSettingsData } from '../../schemas/agent-settings.js';
import type { AsteriskControl } from '../asterisk/control.js';
import { createLogger, type Logger } from '../log.js';
import { renderConfigRepo } from '../pipeline.js';
import { checkRemovals, MASS_REMOVAL_FLAG, planChanges, type ReloadPlan } from '../plan/index.js';
import { reconcile, type ReconcileOutcome } from '../reconcile.js';
import { withReconcileLock } from '../record/lock.js';
import type { ResolvedState } from '../model.js';
import { DirectorySecretStore, type HostFacts } from '../resolve/index.js';
import { cloudElasticIp, connectAsterisk, reconcileDeps, StartupError } from '../runtime.js';
import { massRemovalAcknowledgement, workTreeRevision } from '../source/revision.js';
import { countLine, EXIT, issuesJson, printIssues, printPlan, printPlanWarnings, settingsOrReport, type GuardOutcome, type Io } from './output.js';

export interface HostCommandOptions {
  dir: string;
  settingsFile?: string;
  revision?: string;
  externalAddress?: string;
  /** --allow-mass-removal: the operator acknowledges a change the removal guard would refuse. */
  allowMassRemoval?: boolean;
  json: boolean;
}

/** The guard's verdict on a plan: refused, acknowledged (by the flag or the commit trailer), or nothing to say. */
async function guardOutcome(plan: ReloadPlan, state: ResolvedState, opts: HostCommandOptions): Promise<GuardOutcome | undefined> {
  const refusal = checkRemovals(plan, state.removalGuard);
  if (!refusal) return undefined;
  const acknowledged = opts.allowMassRemoval ? MASS_REMOVAL_FLAG : await massRemovalAcknowledgement(opts.dir);
  return acknowledged ? { refusal, acknowledged } : { refusal };
}

/** --external-address when given, else the instance's Elastic IP from IMDS and the EC2 API. */
function elasticIp(opts: HostCommandOptions, settings: AgentSettingsData, log: Logger): HostFacts['elasticIp'] {
  const external = opts.externalAddress;
  return external !== undefined ? async () => ({ address: external }) : cloudElasticIp(settings, log);
}

/** `pbx-agent plan [DIR]`: what apply would write and reload, touching nothing. */
export async function planCommand(opts: HostCommandOptions, io: Io): Promise<number> {
  const settings = await settingsOrReport(opts.settingsFile, io, opts.settingsFile !== undefined);
  if (!settings) return EXIT.invalidConfig;
  const revision = opts.revision ?? (await workTreeRevision(opts.dir));
  const host: HostFacts = { secrets: new DirectorySecretStore(settings.secrets_dir), elasticIp: elasticIp(opts, settings, createLogger(settings.log_level, process.stderr)) };
  const outcome = await renderConfigRepo(opts.dir, host, revision);
  if (!outcome.files) return invalid(io, opts, outcome.issues);
  const store = new DirectoryFileStore(settings.asterisk.config_dir);
  const onDisk = await readManagedFiles(store, outcome.files);
  const plan = planChanges(outcome.files, onDisk);
  const guard = await guardOutcome(plan, outcome.state!, opts);
  // A change apply would refuse is a problem with the config repo, as an invalid one is.
  const code = guard && !guard.acknowledged ? EXIT.invalidConfig : EXIT.ok;
  if (opts.json) {
    io.out(JSON.stringify({
      ok: code === EXIT.ok, revision, configDir: store.root,
      files: plan.files.map((f) => ({ path: f.path, module: f.module, action: f.action })),
      reloads: plan.reloads, extensions: plan.extensions, conferences: plan.conferences, lockedOut: plan.lockedOut, restartReasons: plan.restartReasons,
      planWarnings: plan.warnings,
      refused: guard && !guard.acknowledged ? guard.refusal : null,
      ...(guard?.acknowledged ? { removalAcknowledgedBy: guard.acknowledged } : {}),
      ...issuesJson(outcome.issues),
    }, null, 2));
    return code;
  }
  printIssues(io, outcome.issues);
  io.out(`Plan for ${opts.dir} (revision ${revision}) against ${store.root}:`);
  printPlan(io, plan, onDisk, { diff: true, verb: 'would', ...(guard ? { guard } : {}) });
  return code;
}

/** `pbx-agent apply [DIR]`: one reconcile: write, reload, verify, roll back on failure. */
export async function applyCommand(opts: HostCommandOptions, io: Io): Promise<number> {
  const settings = await settingsOrReport(opts.settingsFile, io, opts.settingsFile !== undefined);
  if (!settings) return EXIT.invalidConfig;
  // JSON log lines go to stderr; stdout carries the result for people (or --json for machines).
  const log = createLogger(settings.log_level, process.stderr);
  const revision = opts.revision ?? (await workTreeRevision(opts.dir));
  return withAsterisk(settings, log, io, 'apply', async (control) => {
    const deps = await reconcileDeps(settings, control, log, { elasticIp: elasticIp(opts, settings, log) });
    if (opts.allowMassRemoval) deps.options.allowMassRemoval = true;
    // One reconcile at a time: a daemon run in progress is waited for, not taken for a crash.
    const outcome = await withReconcileLock(settings.state_dir, (pid) => io.err(`apply: waiting for the reconcile in progress (pid ${pid}) to finish`), () =>
      reconcile(deps, { dir: opts.dir, revision }));
    if (opts.json) io.out(JSON.stringify(outcome, null, 2));
    else printOutcome(io, outcome);
    return outcomeExitCode(outcome);
  });
}

/** One reconcile's result for people: problems, warnings, the status line, and a refusal's remedy. */
export function printOutcome(io: Io, outcome: ReconcileOutcome): void {
  printIssues(io, outcome.issues);
  printPlanWarnings(io, outcome.planWarnings);
  if (outcome.refusal) {
    io.out(`refused: revision ${outcome.revision}: ${outcome.refusal.reason}`);
    io.out(`Nothing was written or reloaded; ${outcome.refusal.fix}.`);
    return;
  }
  if (outcome.removalAcknowledgedBy) io.out(`Mass removal acknowledged by ${outcome.removalAcknowledgedBy}`);
  // `reloads` lists the modules Asterisk did reload, none when the run stopped before that.
  const reloaded = outcome.reloads.length ? `, reloaded ${outcome.reloads.join(', ')}` : '';
  const edited = outcome.dialplanEdits > 0 ? `, dialplan changed live (${outcome.dialplanEdits} edit${outcome.dialplanEdits === 1 ? '' : 's'})` : '';
  io.out(`${outcome.status}: revision ${outcome.revision}${reloaded}${edited}${outcome.error ? `: ${outcome.error}` : ''}`);
}

/** 0 applied or unchanged; 1 invalid or refused (the config repo must change); 3 anything else. */
export function outcomeExitCode(outcome: ReconcileOutcome): number {
  if (outcome.status === 'invalid' || outcome.status === 'refused') return EXIT.invalidConfig;
  return outcome.status === 'applied' || outcome.status === 'unchanged' ? EXIT.ok : EXIT.failure;
}

/**
 * Runs `fn` with a logged-in AMI connection, closed afterwards. A connection that cannot be made
 * (unreachable, wrong secret) is printed for the operator and exits 3.
 */
export async function withAsterisk(
  settings: AgentSettingsData,
  log: Logger,
  io: Io,
  command: string,
  fn: (control: AsteriskControl) => Promise<number>,
): Promise<number> {
  let connection;
  try {
    connection = await connectAsterisk(settings, log);
  } catch (e) {
    if (!(e instanceof StartupError)) throw e;
    io.err(`${command}: ${e.message}`);
    return EXIT.failure;
  }
  try {
    return await fn(connection.control);
  } finally {
    await connection.client.close();
  }
}

function invalid(io: Io, opts: HostCommandOptions, issues: ConfigIssue[]): number {
  if (opts.json) io.out(JSON.stringify({ ok: false, ...issuesJson(issues) }, null, 2));
  else {
    printIssues(io, issues);
    io.err(`${opts.dir}: invalid: ${countLine(issues)}; nothing was planned`);
  }
  return EXIT.invalidConfig;
}

