/**
 * One reconcile: config repo → verified Asterisk configuration, or the last-known-good one back.
 *
 *   render (load → resolve → render) → plan → apply → reload → verify → record
 *
 * Nothing changed → nothing written, nothing reloaded. A change Asterisk rejects is rolled back
 * and remembered so that it is not retried until the config changes again.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readManagedFiles, restoreFiles, writeChangedFiles } from './apply/index.js';
import type { ManagedFileStore } from './apply/files.js';
import { AmiError } from './asterisk/ami.js';
import type { AsteriskControl } from './asterisk/control.js';
import { describeMissingRights } from './asterisk/rights.js';
import { formatIssue, type ConfigIssue } from './load/issues.js';
import { logEvent, type EventName, type Logger } from './log.js';
import { renderConfigRepo } from './pipeline.js';
import { checkRemovals, MASS_REMOVAL_FLAG, planChanges, type PlanWarning, type ReloadPlan, type RemovalRefusal } from './plan/index.js';
import { appliedNetworkOf, type AgentState, type AppliedNetwork, type ReconcileStatus, type StateStore } from './record/state.js';
import type { ResolvedState } from './model.js';
import { ReloadError, reloadModules } from './reload/index.js';
import { restartWhenIdle } from './reload/restart.js';
import type { RenderedFile } from './render/index.js';
import { inReloadOrder, MANAGED_DIR, splitManagedText, type AsteriskModule } from './managed-files.js';
import type { HostFacts } from './resolve/index.js';
import { massRemovalAcknowledgement } from './source/revision.js';
import { describeMismatches, liveEndpointNames, verifyLiveState, type ModuleChange, type VerifyOptions, type VerifyResult } from './verify/index.js';
import { compareDialplan } from './plan/dialplan.js';
import { comparePjsip } from './plan/objects.js';
import { planLiveObjects, type LiveObjectsPlan } from './plan/live-objects.js';
import type { RenderOutcome } from './pipeline.js';
import type { Trigger } from './daemon/runner.js';

export interface ReconcileDeps {
  asterisk: AsteriskControl;
  /** The Asterisk config directory (/etc/asterisk). */
  files: ManagedFileStore;
  state: StateStore;
  host: HostFacts;
  log: Logger;
  now: () => Date;
  options: {
    reloadTimeoutMs: number;
    verifyDetailLimit: number;
    restartPolicy: 'never' | 'when_idle';
    /** The operator acknowledged a mass removal for this run (--allow-mass-removal). */
    allowMassRemoval?: boolean;
    /**
     * Apply a change of at most this many extensions as live objects instead of a res_pjsip
     * reload (asterisk.live_objects); absent: always reload.
     */
    liveObjectsLimit?: number;
  };
}

export interface ConfigSource {
  dir: string;
  revision: string;
  /** The full commit, when the config came from git (kept to refuse history rewrites). */
  commit?: string;
  /**
   * When this run fetched the commit: how long the fetch took (with everything asked of git
   * before the checkout), and the checkout.
   */
  sourceMs?: { fetch: number; checkout: number };
  /** What started the run and how long it waited to start (the daemon's runs). */
  trigger?: Trigger;
}

export interface ReconcileOutcome {
  status: ReconcileStatus;
  revision: string;
  changedFiles: string[];
  /** Modules Asterisk reloaded (a dialplan changed by live edits is not among them). */
  reloads: AsteriskModule[];
  /** Live dialplan edits sent instead of reloading pbx_config (0 when none). */
  dialplanEdits: number;
  /** Live-object edits sent instead of reloading res_pjsip (0 when none). */
  liveObjectEdits: number;
  extensions: ReloadPlan['extensions'];
  restartReasons: string[];
  /** What the change would do to the phones beyond its diff (plan/hazards.ts). */
  planWarnings: PlanWarning[];
  /** Why the mass-removal guard refused the change (status refused). */
  refusal?: RemovalRefusal;
  /** Who acknowledged a mass removal that was applied: the flag, or a commit's trailer. */
  removalAcknowledgedBy?: string;
  issues: ConfigIssue[];
  verification?: VerifyResult;
  /**
   * The managed files as they stand after this run (path → text, undefined = absent), known
   * without reading the disk again: what drift is measured against. Absent when the run did not
   * get as far as reading them.
   */
  liveFiles?: Map<string, string | undefined>;
  error?: string;
  /** The stable code of a failure (the event that reported it); absent when applied or unchanged. */
  code?: EventName;
  /** Milliseconds per stage. */
  stages: Record<string, number>;
  /** The applied record's network facts after the run (what the cloud checks compare). */
  appliedNetwork?: AppliedNetwork;
}



export async function reconcile(deps: ReconcileDeps, source: ConfigSource): Promise<ReconcileOutcome> {
  const run = new Run(deps, source);
  const state = await deps.state.read();
  let verdict: Verdict;
  try {
    // Callers hold the reconcile lock, so no writer of ours is mid-write: any temp file is a
    // leftover of a killed run, possibly holding credentials.
    const leftovers = [...(await deps.files.removeLeftovers(MANAGED_DIR)), ...(await deps.state.removeLeftovers())];
    if (leftovers.length > 0) logEvent(deps.log, 'info', 'apply.leftovers_removed', { files: leftovers }, `removed ${leftovers.length} temp file(s) left by an interrupted write`);
    verdict = await reconcileSteps(run, state);
  } catch (e) {
    // Anything unforeseen (Asterisk vanishing mid-verify, a disk error): record it and keep
    // whatever is pending for the next run, which will finish or roll back the change.
    const latest = await deps.state.read().catch(() => state);
    // A write cut short leaves the files unknown to the run: the caller reads the disk instead.
    if (Object.keys(run.outcome.stages).pop() === 'apply') delete run.outcome.liveFiles;
    logEvent(deps.log, 'error', 'reconcile.failed', { revision: source.revision, stage: Object.keys(run.outcome.stages).pop() }, (e as Error).message);
    verdict = { state: latest, status: 'failed', error: (e as Error).message };
  }
  // record: whatever happened above, the state and the one reconcile.finished line.
  return run.finish(verdict);
}

/** How a run ended: the state to record, its status, and why it failed. */
interface Verdict {
  state: AgentState;
  status: ReconcileStatus;
  error?: string;
  code?: EventName;
}

/** A Verdict, written the way the steps read. */
function ended(state: AgentState, status: ReconcileStatus, error?: string, code?: EventName): Verdict {
  return { state, status, ...(error !== undefined ? { error } : {}), ...(code ? { code } : {}) };
}

async function reconcileSteps(run: Run, state: AgentState): Promise<Verdict> {
  const { deps, source } = run;

  // An adopted Elastic IP is a request recorded in the state (by the cloud checks), not a field.
  const host = state.adopted ? { ...deps.host, adoptedAddress: () => state.adopted?.address } : deps.host;
  const rendered = await run.stage('render', () => renderConfigRepo(source.dir, host, source.revision));
  run.outcome.issues = rendered.issues;
  if (!rendered.files) return ended(state, 'invalid', rendered.issues.filter((i) => i.severity === 'error').map(formatIssue).join('; '));

  const fingerprint = fingerprintOf(rendered.files);
  if (state.failed?.fingerprint === fingerprint && !state.pending) {
    return ended(state, 'skipped', `this configuration was rolled back before (${state.failed.reason}); waiting for a new commit`);
  }

  const { onDisk, plan } = await run.stage('plan', async () => {
    const current = await readManagedFiles(deps.files, rendered.files!);
    return { onDisk: current, plan: planChanges(rendered.files!, current) };
  });
  run.outcome.liveFiles = new Map(onDisk);
  run.outcome.planWarnings = plan.warnings;
  for (const w of plan.warnings) logEvent(deps.log, 'warn', 'plan.warning', { revision: source.revision, kind: w.kind }, w.message);

  // A change that would take (nearly) every phone off the PBX is nearly always a typo (a renamed
  // extensions/ folder): nothing is written until someone acknowledges it.
  const refusal = checkRemovals(plan, rendered.state!.removalGuard);
  if (refusal) {
    const acknowledged = deps.options.allowMassRemoval ? MASS_REMOVAL_FLAG : await massRemovalAcknowledgement(source.dir, source.commit);
    const fields = { revision: source.revision, removed: refusal.removed.slice(0, 50), lockedOut: refusal.lockedOut.slice(0, 50), before: refusal.before, limit: refusal.limit };
    if (!acknowledged) {
      run.outcome.refusal = refusal;
      Object.assign(run.outcome, { extensions: plan.extensions });
      logEvent(deps.log, 'error', 'reconcile.refused', { ...fields, fix: refusal.fix }, `refused, nothing was applied: ${refusal.reason}`);
      const refused = { revision: source.revision, reason: refusal.reason, fix: refusal.fix, at: deps.now().toISOString() };
      return ended({ ...state, refused }, 'refused', refusal.reason);
    }
    run.outcome.removalAcknowledgedBy = acknowledged;
    logEvent(deps.log, 'warn', 'reconcile.removal_acknowledged', { ...fields, by: acknowledged }, `applying a mass removal acknowledged by ${acknowledged}: ${refusal.reason}`);
  }

  const modules = inReloadOrder([...plan.reloads, ...(state.pending?.modules ?? [])]);
  Object.assign(run.outcome, { extensions: plan.extensions, restartReasons: plan.restartReasons });
  state = withAdvertised(state, rendered.state!);
  if (modules.length === 0) {
    // The files already say what this commit says: it is the applied one now.
    if (state.applied) {
      state = { ...state, applied: { ...state.applied, ...(source.commit ? { revision: source.revision, commit: source.commit } : {}), network: appliedNetworkOf(rendered.state!) } };
    }
    if (!state.restartPending) return ended(state, 'unchanged');
    const pjsipBody = rendered.files.find((f) => f.module === 'res_pjsip')!.body;
    return ended(await settleRestart(run, state, await transportsAwaitingRestart(deps, pjsipBody), pjsipBody), 'unchanged');
  }

  // What Asterisk had before: kept on disk before anything is written, so that a crash between
  // here and verification can still be rolled back by the next run.
  const previous = await run.stage('save', () => previousFiles(deps, state, plan, onDisk));
  const changes = moduleChanges(modules, rendered.files, previous, onDisk, plan);
  // The edits from what Asterisk had verified to what the files say now. When an earlier run left
  // this change pending, Asterisk holds the old dialplan, the new one, or the old one with some of
  // these edits: each edit sets or removes one entry whatever is there, so sending them all again
  // ends in the new dialplan in every case.
  const dialplanChange = changes.find((c) => c.module === 'pbx_config');
  const dialplanEdits = dialplanChange && (dialplanChange.dialplan ??= compareDialplan(dialplanChange.before, dialplanChange.after)).edits;
  const live = state.pending ? undefined : await run.stage('preflight', () => liveObjectsPlan(run, state, changes));
  run.reloadTimeoutMs = scaledReloadTimeout(deps.options.reloadTimeoutMs, Math.max(plan.extensionsBefore, rendered.state!.extensions.length));

  // Endpoints Asterisk has that are not the agent's: an extension with the same name would make
  // two endpoint sections, and res_pjsip then keeps every endpoint on its old configuration.
  // The AMI user's rights, before anything is written: without them the change would be written
  // and reloaded and then misread as rejected (agent/asterisk/rights.ts).
  const missingRights = await run.stage('preflight', () => deps.asterisk.missingRights());
  if (missingRights.length > 0) {
    const message = describeMissingRights(missingRights, deps.asterisk.username);
    logEvent(deps.log, 'error', 'ami.permission_denied', { missing: missingRights.map((m) => `${m.direction} ${m.class}`) }, message);
    return ended(state, 'failed', message, 'ami.permission_denied');
  }
  const foreign = await run.stage('preflight', () => foreignEndpoints(deps.asterisk, changes));
  const collisions = plan.extensions.added.filter((n) => foreign.has(n));
  if (collisions.length > 0) {
    run.outcome.issues = collisions.map((n) => collisionIssue(n, rendered));
    return ended(state, 'invalid', run.outcome.issues.map(formatIssue).join('; '));
  }

  const pending = { revision: source.revision, fingerprint, modules, paths: [...previous.keys()], at: deps.now().toISOString(), ...(live || state.pending?.live ? { live: true } : {}) };
  const dropLiveObjects = mayHoldLiveObjects(state);
  await run.stage('save', () => deps.state.write({ ...state, pending }));
  if (state.pending) {
    const why = state.pending.lastError
      ? `finishing a change left pending by a run that failed (${state.pending.lastError})`
      : 'finishing a change that was interrupted before it was verified (the agent stopped mid-run)';
    logEvent(deps.log, 'warn', 'reconcile.resumed', { revision: state.pending.revision, modules: state.pending.modules, ...(state.pending.lastError ? { lastError: state.pending.lastError } : {}) }, why);
  }

  run.outcome.changedFiles = await run.stage('apply', () => writeChangedFiles(deps.files, plan));
  for (const f of plan.files) if (f.action !== 'unchanged') run.outcome.liveFiles!.set(f.path, f.rendered.text);
  const after = { ...state, pending };
  const verifyOptions = { detailLimit: deps.options.verifyDetailLimit, foreign };
  try {
    const reloaded = await run.stage('reload', () =>
      reloadModules(deps.asterisk, modules, run.reloadTimeoutMs, { ...(dialplanEdits ? { dialplan: dialplanEdits } : {}), ...(live ? { pjsip: live.edits } : {}), dropLiveObjects }),
    );
    run.outcome.reloads = reloaded.filter((r) => r.how === 'reload').map((r) => r.module);
    if (reloaded.some((r) => r.how === 'edits')) run.outcome.dialplanEdits = dialplanEdits!.length;
    const pjsipReport = reloaded.find((r) => r.module === 'res_pjsip');
    if (pjsipReport?.fellBack !== undefined) {
      logEvent(deps.log, 'warn', 'live.fell_back', { revision: source.revision }, `Asterisk refused a live object, so res_pjsip was reloaded instead: ${pjsipReport.fellBack}`);
    }
    let verification = await run.stage('verify', () => verifyLiveState(deps.asterisk, changes, verifyOptions));
    if (!verification.ok && pjsipReport?.how === 'live') {
      // Live objects hide nothing that pjsip.conf, already written, does not say: a reload shows
      // whether the change itself is at fault (someone may have reloaded in between).
      const reason = describeMismatches(verification.mismatches);
      logEvent(deps.log, 'warn', 'live.fell_back', { revision: source.revision }, `the live objects did not verify (${reason}), so res_pjsip was reloaded instead`);
      await run.stage('reload', () => reloadModules(deps.asterisk, ['res_pjsip'], run.reloadTimeoutMs, { dropLiveObjects: true }));
      pjsipReport.how = 'reload';
      for (const c of changes) delete c.lockedOut;
      run.outcome.reloads = inReloadOrder([...run.outcome.reloads, 'res_pjsip']);
      verification = await run.stage('verify', () => verifyLiveState(deps.asterisk, changes, verifyOptions));
    }
    run.outcome.verification = verification;
    if (pjsipReport?.how === 'live') run.outcome.liveObjectEdits = live!.edits.length;
    if (!verification.ok) return await rollBack(run, after, previous, changes, verifyOptions, describeMismatches(verification.mismatches));
    const { pending: _done, failed: _old, live: _folded, ...rest } = after;
    // What Asterisk holds as live objects now: after a res_pjsip reload, nothing.
    const liveNow = pjsipReport?.how !== 'live' ? (pjsipReport ? undefined : state.live)
      // Nothing left live (an extension created live and deleted again): nothing to fold.
      : live!.record.added.length + live!.record.changed.length + live!.record.removed.length === 0 ? undefined
      : { ...live!.record, since: state.live?.since ?? deps.now().toISOString(), updated: deps.now().toISOString() };
    const applied = {
      revision: source.revision,
      ...(source.commit ? { commit: source.commit } : {}),
      fingerprint,
      at: deps.now().toISOString(),
      files: hashes(rendered.files),
      network: appliedNetworkOf(rendered.state!),
    };
    if (liveNow) Object.assign(rest, { live: liveNow });
    // What still differs live (bind, protocol, TLS) is what needs a restart; the plan's guess is not.
    const pjsipBody = rendered.files.find((f) => f.module === 'res_pjsip')!.body;
    const reasons = modules.includes('res_pjsip')
      ? verification.restartPending
      : state.restartPending ? await transportsAwaitingRestart(deps, pjsipBody) : [];
    return ended(await settleRestart(run, { ...rest, applied }, reasons, pjsipBody), 'applied');
  } catch (e) {
    const transient = notTheConfigsFault(e);
    if (transient) {
      // Asterisk is away, stuck, busy or forbids the action, which says nothing about the config:
      // keep the change pending so that the next run reloads and verifies it, rather than
      // blaming this revision and rolling back a good change.
      logEvent(deps.log, 'error', transient, { ...(e instanceof ReloadError ? { module: e.module } : {}) }, (e as Error).message);
      return ended({ ...after, pending: { ...pending, lastError: (e as Error).message } }, 'failed', (e as Error).message, transient);
    }
    return await rollBack(run, after, previous, changes, verifyOptions, e instanceof Error ? e.message : String(e));
  }
}

/** Asterisk may hold live objects: recorded, or sent by a run that stopped midway. */
function mayHoldLiveObjects(state: AgentState): boolean {
  return state.live !== undefined || state.pending?.live === true;
}

/**
 * The live-object edits for this change (plan/live-objects.ts), or undefined when res_pjsip is to
 * be reloaded: not configured, no pjsip.conf change, a change live objects cannot carry, or an
 * Asterisk without the sorcery mapping (logged once per probe as live.unavailable).
 */
async function liveObjectsPlan(run: Run, state: AgentState, changes: readonly ModuleChange[]): Promise<Extract<LiveObjectsPlan, { edits: unknown }> | undefined> {
  const { deps } = run;
  const store = deps.asterisk.liveObjects;
  const limit = deps.options.liveObjectsLimit;
  const pjsip = changes.find((c) => c.module === 'res_pjsip');
  if (!store || limit === undefined || !pjsip) return undefined;
  pjsip.pjsip ??= comparePjsip(pjsip.before, pjsip.after);
  // An md5_cred no password matches: removed file-defined extensions are locked out with it.
  const credential = randomBytes(16).toString('hex');
  const plan = planLiveObjects(pjsip.pjsip, state.live, limit, credential);
  if ('reason' in plan) {
    logEvent(deps.log, 'debug', 'live.skipped', { revision: run.source.revision }, `res_pjsip is reloaded: ${plan.reason}`);
    return undefined;
  }
  const availability = await store.availability();
  if (!availability.live) {
    // Once per probe (per AMI connection), not on every run.
    if (availability.probed) logEvent(deps.log, 'warn', 'live.unavailable', {}, `live objects are enabled but cannot be used, so res_pjsip is reloaded: ${availability.reason}`);
    return undefined;
  }
  if (plan.lockedOut.length > 0) pjsip.lockedOut = { numbers: new Set(plan.lockedOut), credential };
  return plan;
}

/**
 * An adoption stands while pbx.yaml names another address; once it names the adopted one, or
 * says auto, there is nothing left to override.
 */
function withAdvertised(state: AgentState, resolved: ResolvedState): AgentState {
  if (!state.adopted || resolved.advertised.source === 'adopted') return state;
  const { adopted: _settled, ...rest } = state;
  return rest;
}

/**
 * The event for a failure that says nothing about the config (Asterisk down, hung, busy with
 * another reload, shutting down, or the AMI user lacking a right), or undefined when Asterisk
 * answered and the answer is a verdict on the change.
 */
function notTheConfigsFault(e: unknown): EventName | undefined {
  if (e instanceof ReloadError) {
    const events: Record<ReloadError['kind'], EventName | undefined> = { hung: 'reload.hung', unavailable: 'ami.unreachable', busy: 'reload.busy', forbidden: 'ami.permission_denied', refused: undefined };
    return events[e.kind];
  }
  if (e instanceof AmiError) {
    if (e.code === 'ami.permission_denied') return 'ami.permission_denied';
    if (e.code === 'ami.shutting_down') return 'reload.busy';
    if (['ami.unreachable', 'ami.disconnected', 'ami.closed', 'ami.timeout'].includes(e.code)) return 'ami.unreachable';
  }
  return undefined;
}

/** Restores the last-known-good files, reloads, verifies that, and remembers the failure. */
async function rollBack(
  run: Run,
  state: AgentState,
  previous: ReadonlyMap<string, string | undefined>,
  changes: readonly ModuleChange[],
  verifyOptions: VerifyOptions,
  reason: string,
): Promise<Verdict> {
  const { deps, source } = run;
  const offending = run.outcome.verification?.mismatches.map((m) => m.object) ?? [];
  logEvent(deps.log, 'warn', 'verify.mismatch', { revision: source.revision, objects: [...new Set(offending)].slice(0, 20) }, `Asterisk did not take the change: ${reason}`);
  const failed = { revision: source.revision, fingerprint: state.pending!.fingerprint, reason, at: deps.now().toISOString() };
  try {
    await run.stage('rollback', async () => {
      await restoreFiles(deps.files, previous);
      for (const [rel, text] of previous) run.outcome.liveFiles?.set(rel, text);
      const modules = changes.map((c) => c.module);
      await reloadModules(deps.asterisk, modules, run.reloadTimeoutMs, { dropLiveObjects: mayHoldLiveObjects(state) });
      const back = changes.map((c) => ({ module: c.module, before: c.after, after: c.before }));
      const check = await verifyLiveState(deps.asterisk, back, verifyOptions);
      if (!check.ok) throw new Error(`the restored configuration does not verify either: ${describeMismatches(check.mismatches)}`);
    });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    logEvent(deps.log, 'fatal', 'rollback.failed', { revision: source.revision, reason }, `rolling back failed: ${message}`);
    // Pending stays: the next run finishes the job once Asterisk answers again.
    return ended({ ...state, failed }, 'failed', `${reason}; rollback failed: ${message}`, 'rollback.failed');
  }
  logEvent(deps.log, 'error', 'reconcile.rolled_back', { revision: source.revision, reason, objects: [...new Set(offending)].slice(0, 20) }, 'the change was rolled back to the last-known-good configuration');
  const { pending: _p, live: _folded, ...withoutLive } = state;
  // The restore reloaded res_pjsip, which drops the live objects (reload/index.ts).
  const rest = changes.some((c) => c.module === 'res_pjsip') ? withoutLive : { ...withoutLive, ...(state.live ? { live: state.live } : {}) };
  return ended({ ...rest, failed }, 'rolled_back', reason);
}

/** Transport settings of `pjsipBody` that Asterisk does not have live yet (they wait for a restart). */
async function transportsAwaitingRestart(deps: ReconcileDeps, pjsipBody: string): Promise<string[]> {
  const check = await verifyLiveState(deps.asterisk, [{ module: 'res_pjsip', before: pjsipBody, after: pjsipBody }], {
    detailLimit: deps.options.verifyDetailLimit,
  });
  return check.restartPending;
}

/**
 * Changes a reload cannot apply wait for a restart: recorded (policy never, or calls up), or done
 * now when the policy allows it and no call is up, after which the transports are checked again.
 * A restart done by hand clears the record the next time the transports are checked.
 */
async function settleRestart(run: Run, state: AgentState, reasons: string[], pjsipBody: string): Promise<AgentState> {
  const { restartPending: _old, ...rest } = state;
  if (reasons.length === 0) return rest;
  const { deps } = run;
  const pending = { ...rest, restartPending: { reasons, since: state.restartPending?.since ?? deps.now().toISOString() } };
  if (deps.options.restartPolicy !== 'when_idle') {
    if (!state.restartPending) {
      logEvent(deps.log, 'warn', 'asterisk.restart_required', { reasons }, 'these transport changes take effect only when Asterisk restarts (restart_policy: never)');
    }
    return pending;
  }
  try {
    const result = await run.stage('restart', () => restartWhenIdle(deps.asterisk, Math.max(60_000, deps.options.reloadTimeoutMs)));
    if (result === 'busy') {
      logEvent(deps.log, 'warn', 'asterisk.restart_deferred', { reasons }, 'calls are up; Asterisk will be restarted on a later run when none are');
      return pending;
    }
    const still = await transportsAwaitingRestart(deps, pjsipBody);
    if (still.length > 0) {
      logEvent(deps.log, 'error', 'asterisk.restart_failed', { reasons: still }, 'after the restart the transports still differ from the rendered ones');
      return { ...rest, restartPending: { reasons: still, since: pending.restartPending.since } };
    }
    logEvent(deps.log, 'warn', 'asterisk.restarted', { reasons }, 'Asterisk was restarted (no calls were up) to apply transport changes');
    return rest;
  } catch (e) {
    logEvent(deps.log, 'error', 'asterisk.restart_failed', { reasons }, `restarting Asterisk failed: ${(e as Error).message}`);
    return pending;
  }
}

/** The files as Asterisk last had them verified: from last-known-good while a change is pending. */
async function previousFiles(
  deps: ReconcileDeps,
  state: AgentState,
  plan: ReloadPlan,
  onDisk: ReadonlyMap<string, string | undefined>,
): Promise<Map<string, string | undefined>> {
  const changed = plan.files.filter((f) => f.action !== 'unchanged').map((f) => f.path);
  const previous = new Map(changed.map((p) => [p, onDisk.get(p)]));
  if (state.pending) {
    // The disk holds an unverified change; the known-good copies are the reference.
    for (const [rel, text] of await deps.state.loadLastKnownGood()) previous.set(rel, text);
  } else {
    await deps.state.saveLastKnownGood(previous);
  }
  return previous;
}

function moduleChanges(
  modules: readonly AsteriskModule[],
  files: readonly RenderedFile[],
  previous: ReadonlyMap<string, string | undefined>,
  onDisk: ReadonlyMap<string, string | undefined>,
  plan: ReloadPlan,
): ModuleChange[] {
  return modules.map((module) => {
    const file = files.find((f) => f.module === module)!;
    const before = previous.has(file.path) ? previous.get(file.path) : onDisk.get(file.path);
    const change: ModuleChange = { module, before: splitManagedText(before ?? '').body, after: file.body };
    // The plan compared the files with the disk; reuse that unless the reference is last-known-good.
    if (module === 'res_pjsip' && plan.pjsip && before === onDisk.get(file.path)) change.pjsip = plan.pjsip;
    if (module === 'pbx_config' && plan.dialplan && before === onDisk.get(file.path)) change.dialplan = plan.dialplan;
    return change;
  });
}

/**
 * Endpoints this change adds that Asterisk already has although the agent's previous pjsip.conf
 * did not define them: the operator's own. Nothing is asked when nothing is added.
 */
async function foreignEndpoints(asterisk: AsteriskControl, changes: readonly ModuleChange[]): Promise<Set<string>> {
  const pjsip = changes.find((c) => c.module === 'res_pjsip');
  if (!pjsip) return new Set();
  pjsip.pjsip ??= comparePjsip(pjsip.before, pjsip.after);
  return liveEndpointNames(asterisk, pjsip.pjsip.added);
}

function collisionIssue(number: string, rendered: RenderOutcome): ConfigIssue {
  const ext = rendered.state?.extensions.find((e) => e.number === number);
  const pos = ext ? rendered.locate(ext.source) : { line: 0, column: 0 };
  return {
    severity: 'error',
    file: ext?.source.file ?? 'pbx.yaml',
    line: pos.line,
    column: pos.column,
    field: 'number',
    message:
      `extension ${number} collides with endpoint ${number} that Asterisk already has from outside pbx-agent ` +
      '(a hand-written section in /etc/asterisk); two endpoint sections of one name make res_pjsip keep every endpoint on its old configuration: rename or remove one',
  };
}

function fingerprintOf(files: readonly RenderedFile[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(`${f.path}\u0000${f.bodyHash}\n`);
  return h.digest('hex');
}

function hashes(files: readonly RenderedFile[]): Record<string, string> {
  return Object.fromEntries(files.map((f) => [f.path, f.bodyHash]));
}

/** Names per list in the reconcile.finished line at most (the counts are always whole). */
const LOGGED_NAMES = 100;

/** The code a run of each failing status records when no more specific one is known. */
const FAILURE_CODES: Partial<Record<ReconcileStatus, EventName>> = {
  invalid: 'reconcile.invalid',
  refused: 'reconcile.refused',
  rolled_back: 'reconcile.rolled_back',
  failed: 'reconcile.failed',
};

/**
 * A reload's time limit for a PBX of this size: `reload_timeout_seconds` per 2,000 extensions, at
 * least once. Reloads grow with the PBX (a real Asterisk 22 on 2 vCPUs: pbx_config 0.1 s at 1,000
 * extensions, 21-57 s at 10,000; res_pjsip 0.15 s and 3.2-4.0 s), and a working reload cut off as
 * "hung" leaves the change pending while Asterisk still holds its reload lock, so every retry is
 * refused as busy until it ends.
 */
export function scaledReloadTimeout(timeoutMs: number, extensions: number): number {
  return Math.round(timeoutMs * Math.max(1, extensions / 2000));
}

/** Stage timings, the outcome being built, and the record stage at the end. */
class Run {
  readonly outcome: ReconcileOutcome;
  /** The reload time limit for this run's PBX (scaledReloadTimeout). */
  reloadTimeoutMs: number;
  private readonly started = performance.now();

  constructor(readonly deps: ReconcileDeps, readonly source: ConfigSource) {
    this.reloadTimeoutMs = deps.options.reloadTimeoutMs;
    this.outcome = {
      status: 'unchanged',
      revision: source.revision,
      changedFiles: [],
      reloads: [],
      dialplanEdits: 0,
      liveObjectEdits: 0,
      extensions: { added: [], changed: [], removed: [] },
      restartReasons: [],
      planWarnings: [],
      issues: [],
      stages: {},
    };
  }

  async stage<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.outcome.stages[name] = Math.round(((this.outcome.stages[name] ?? 0) + performance.now() - t0) * 10) / 10;
    }
  }

  /** record: state file and the one `reconcile.finished` line. */
  async finish({ state, status, error, code }: Verdict): Promise<ReconcileOutcome> {
    const o = this.outcome;
    o.status = status;
    // The fetch goes first, added only now: the stages so far name where a failure happened, and
    // the fetch was done before this run began.
    const fetched = this.source.sourceMs;
    if (fetched) o.stages = { fetch: Math.round(fetched.fetch * 10) / 10, checkout: Math.round(fetched.checkout * 10) / 10, ...o.stages };
    if (error !== undefined) o.error = error;
    const failureCode = code ?? FAILURE_CODES[status];
    if (failureCode) o.code = failureCode;
    const durationMs = Math.round(performance.now() - this.started);
    const failedRun = status === 'invalid' || status === 'refused' || status === 'rolled_back' || status === 'failed';
    const lastRun = { at: this.deps.now().toISOString(), status, revision: this.source.revision, durationMs, ...(error ? { error } : {}), ...(failureCode ? { code: failureCode } : {}) };
    // A refusal stands until a run gets the files to what the config repo says.
    const { refused: _settled, ...withoutRefusal } = state;
    const next = status === 'applied' || status === 'unchanged' ? withoutRefusal : state;
    if (next.applied?.network) o.appliedNetwork = next.applied.network;
    await this.stage('record', () =>
      this.deps.state.write({ ...next, lastRun, consecutiveFailures: failedRun ? state.consecutiveFailures + 1 : status === 'skipped' ? state.consecutiveFailures : 0 }),
    );

    if (status === 'invalid') {
      logEvent(this.deps.log, 'error', 'reconcile.invalid', { revision: o.revision, errors: o.issues.filter((i) => i.severity === 'error').map(formatIssue) }, 'the config repo is invalid; nothing was applied');
    } else if (status === 'skipped') {
      logEvent(this.deps.log, 'info', 'reconcile.skipped', { revision: o.revision }, error ?? 'skipped');
    }
    const v = o.verification;
    logEvent(
      this.deps.log,
      failedRun ? 'error' : 'info',
      'reconcile.finished',
      {
        revision: o.revision,
        status,
        changedFiles: o.changedFiles,
        reloads: status === 'unchanged' || status === 'invalid' || status === 'skipped' || status === 'refused' ? [] : o.reloads,
        // Capped: journald splits a line longer than LineMax (48K, journald.conf(5)) into pieces
        // that are no longer JSON, and a first sync of 10,000 extensions lists more than that.
        extensions: { added: o.extensions.added.slice(0, LOGGED_NAMES), changed: o.extensions.changed.slice(0, LOGGED_NAMES), removed: o.extensions.removed.slice(0, LOGGED_NAMES) },
        extensionCounts: { added: o.extensions.added.length, changed: o.extensions.changed.length, removed: o.extensions.removed.length },
        ...(o.dialplanEdits > 0 ? { dialplanEdits: o.dialplanEdits } : {}),
        ...(o.liveObjectEdits > 0 ? { liveObjectEdits: o.liveObjectEdits } : {}),
        verification: v ? { ok: v.ok, mismatches: v.mismatches.length, restartPending: v.restartPending, ...v.checked } : undefined,
        durationMs,
        stages: o.stages,
        ...(this.source.trigger ? { trigger: this.source.trigger } : {}),
        ...(error ? { error } : {}),
      },
      `reconcile ${status}`,
    );
    return o;
  }
}
