/**
 * reload, the fold: once pushes have stopped for a while, live objects (plan/live-objects.ts) are
 * folded into pjsip.conf, which already holds them: res_pjsip reloads, then the astdb family is
 * deleted. That order leaves no gap; deleting first would leave an added extension missing, or a
 * changed one old, until the reload ends. Afterwards Asterisk reads every extension from the file
 * again (a live endpoint costs Asterisk more per REGISTER: its JSON is parsed on each lookup).
 *
 * Runs under the reconcile lock, like a reconcile.
 */
import { logEvent } from '../log.js';
import { MANAGED_FILES, splitManagedText } from '../managed-files.js';
import { comparePjsip } from '../plan/objects.js';
import type { ReconcileDeps } from '../reconcile.js';
import { scaledReloadTimeout } from '../reconcile.js';
import { describeMismatches, verifyLiveState } from '../verify/index.js';
import { reloadModules } from './index.js';

export type FoldResult = 'nothing' | 'folded' | 'deferred' | 'failed' | { notYet: number };

/**
 * `quietMs`: fold only once the last live write is this old; otherwise `{ notYet: ms left }` (a
 * timer may fire early: it was set before a later change, or by another process's run).
 */
export async function foldLiveObjects(deps: ReconcileDeps, quietMs = 0): Promise<FoldResult> {
  const state = await deps.state.read();
  const live = state.live;
  // A pending change reloads res_pjsip itself on the next run, which drops the live objects.
  if (!live || state.pending) return 'nothing';
  const quietFor = deps.now().getTime() - Date.parse(live.updated ?? live.since);
  if (quietFor < quietMs) return { notYet: quietMs - quietFor };
  const numbers = [...live.added, ...live.changed];
  const removed = live.removed ?? [];
  const pjsipPath = MANAGED_FILES.find((f) => f.module === 'res_pjsip')!.path;
  const body = splitManagedText((await deps.files.read(pjsipPath)) ?? '').body;
  // The same objects, read back from the file after the reload as a changed extension would be.
  const same = comparePjsip(body, body);
  const started = performance.now();
  try {
    // A removed extension whose endpoint or aor is a live object would still be there while the
    // reload re-synchronizes qualify, and deleting it afterwards runs no observer: its OPTIONS
    // and device state would linger. Its auth stays, locked out, until the family goes.
    for (const number of removed) {
      for (const type of ['endpoint', 'aor'] as const) await deps.asterisk.liveObjects?.drop(type, number);
    }
    await reloadModules(deps.asterisk, ['res_pjsip'], scaledReloadTimeout(deps.options.reloadTimeoutMs, same.extensionsBefore), { dropLiveObjects: true });
  } catch (e) {
    // Asterisk away or busy: the live objects stay, and are folded after the next quiet spell.
    logEvent(deps.log, 'warn', 'live.fold_failed', { extensions: numbers.length }, `folding live objects into pjsip.conf was put off: ${(e as Error).message}`);
    return 'deferred';
  }
  const { live: _folded, ...rest } = state;
  await deps.state.write(rest);
  const check = await verifyLiveState(deps.asterisk, [{ module: 'res_pjsip', before: body, after: body, pjsip: { ...same, changed: numbers, removed } }], {
    detailLimit: deps.options.verifyDetailLimit,
  });
  const ms = Math.round(performance.now() - started);
  if (!check.ok) {
    logEvent(deps.log, 'error', 'live.fold_failed', { extensions: numbers.length, ms }, `after folding, Asterisk does not have what pjsip.conf says: ${describeMismatches(check.mismatches)}`);
    return 'failed';
  }
  logEvent(deps.log, 'info', 'live.folded', { added: live.added.length, changed: live.changed.length, removed: removed.length, since: live.since, ms }, `${numbers.length + removed.length} live extension(s) folded into pjsip.conf`);
  return 'folded';
}
