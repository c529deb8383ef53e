/**
 * One sync: fetch the config repo, then reconcile, holding the reconcile lock for both (the
 * checkout is shared too). Used by the daemon and by `pbx-agent sync`. A fetch that fails is a
 * failed run like any other: recorded in the state, so that `status` counts it.
 */
import type { AgentSettingsData } from '../../schemas/agent-settings.js';
import { logEvent, type Logger } from '../log.js';
import { reconcile, type ReconcileDeps, type ReconcileOutcome } from '../reconcile.js';
import { withReconcileLock } from '../record/lock.js';
import { recordFailedRun, type AgentState } from '../record/state.js';
import type { FetchResult, GitSource } from '../source/git.js';
import type { Trigger, TriggerReason } from './runner.js';

export interface SyncResult {
  ok: boolean;
  outcome?: ReconcileOutcome;
  dir?: string;
  /** Why the fetch failed, when it did. */
  fetchFailure?: Extract<FetchResult, { ok: false }>;
}

export async function syncOnce(
  settings: AgentSettingsData,
  deps: ReconcileDeps,
  source: GitSource,
  log: Logger,
  reason: TriggerReason,
  options: {
    signal?: AbortSignal;
    onWait?: (ownerPid: number) => void;
    /** What started the run, for its reconcile.finished line (the daemon's runs). */
    trigger?: Trigger;
    /** A change to the state that must be made under the lock first (an Elastic IP adopted or dropped). */
    amendState?: (state: AgentState) => AgentState;
  } = {},
): Promise<SyncResult> {
  return withReconcileLock(settings.state_dir, options.onWait, async () => {
    let state = await deps.state.read();
    if (options.amendState) {
      const amended = options.amendState(state);
      if (amended !== state) await deps.state.write((state = amended));
    }
    const fetchStarted = performance.now();
    const fetched = await source.fetch(state.applied?.commit, options.signal);
    const fetchMs = performance.now() - fetchStarted;
    if (!fetched.ok) {
      const at = deps.now();
      const code = fetched.kind === 'unreachable' ? 'source.unreachable' : 'source.rejected';
      const rejected = fetched.kind !== 'unreachable' ? { sourceRejected: { ...(fetched.commit ? { commit: fetched.commit } : {}), reason: fetched.message, at: at.toISOString() } } : {};
      await recordFailedRun(deps.state, { code, error: fetched.message, at }, rejected);
      const event = fetched.kind === 'unreachable' ? 'source.unreachable' : 'source.rejected';
      logEvent(log, 'error', event, { reason, commit: fetched.commit, applied: fetched.applied }, fetched.message);
      return { ok: false, fetchFailure: fetched };
    }
    if (state.sourceRejected) {
      const { sourceRejected: _gone, ...rest } = state;
      await deps.state.write(rest);
    }
    const outcome = await reconcile(deps, {
      dir: fetched.dir,
      revision: fetched.revision,
      ...(fetched.commit ? { commit: fetched.commit } : {}),
      ...(fetched.localPath ? {} : { sourceMs: { fetch: fetchMs - (fetched.checkoutMs ?? 0), checkout: fetched.checkoutMs ?? 0 } }),
      ...(options.trigger ? { trigger: options.trigger } : {}),
    });
    const ok = outcome.status === 'applied' || outcome.status === 'unchanged';
    return { ok, outcome, dir: fetched.dir };
  });
}
