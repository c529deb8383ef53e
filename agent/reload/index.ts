/**
 * reload: `Reload` of exactly the modules whose files changed, one at a time, each with a timeout.
 * Never `core reload`: it reloads everything, and reload deadlocks were reported on 20.18.2 and
 * 20.20.1 (asterisk/asterisk#1855, #2081), which a per-module timeout at least names.
 */
import type { AsteriskControl } from '../asterisk/control.js';
import type { AsteriskModule } from '../managed-files.js';
import type { DialplanEdit } from '../plan/dialplan.js';
import type { LiveObjectEdit } from '../plan/live-objects.js';
import { applyDialplanEdits } from './dialplan-live.js';
import { onceMoreIfDropped } from './errors.js';
import { applyLiveObjectEdits } from './pjsip-live.js';

export { ReloadError } from './errors.js';

export interface ReloadReport {
  module: AsteriskModule;
  /**
   * How: a module reload, live dialplan edits instead of reloading pbx_config, or live objects
   * instead of reloading res_pjsip.
   */
  how: 'reload' | 'edits' | 'live';
  ms: number;
  /** Why live objects were planned but res_pjsip was reloaded after all. */
  fellBack?: string;
}

export interface LiveChanges {
  /** Dialplan edits that take pbx_config's place. */
  dialplan?: readonly DialplanEdit[];
  /** Live-object edits that take res_pjsip's place. */
  pjsip?: readonly LiveObjectEdit[];
  /** Asterisk may hold live objects: a res_pjsip reload drops them (see below). */
  dropLiveObjects?: boolean;
}

/**
 * `live.dialplan`, when given, takes pbx_config's place: the dialplan is changed entry by entry
 * (reload/dialplan-live.ts) instead of re-reading all of extensions.conf. `live.pjsip` likewise
 * takes res_pjsip's (reload/pjsip-live.ts); if Asterisk refuses a live object, res_pjsip is
 * reloaded instead, which loads the same objects from the pjsip.conf already written.
 *
 * After every res_pjsip reload the live objects are dropped: pjsip.conf on disk holds all of
 * them, and a stale one would hide the file's newer version of its extension.
 */
export async function reloadModules(
  asterisk: AsteriskControl,
  modules: readonly AsteriskModule[],
  timeoutMs: number,
  live: LiveChanges = {},
): Promise<ReloadReport[]> {
  const done: ReloadReport[] = [];
  for (const module of modules) {
    const start = performance.now();
    if (module === 'pbx_config' && live.dialplan) {
      await applyDialplanEdits(asterisk, live.dialplan, timeoutMs);
      done.push({ module, how: 'edits', ms: performance.now() - start });
      continue;
    }
    let fellBack: string | undefined;
    if (module === 'res_pjsip' && live.pjsip && asterisk.liveObjects) {
      try {
        await applyLiveObjectEdits(asterisk.liveObjects, live.pjsip);
        done.push({ module, how: 'live', ms: performance.now() - start });
        continue;
      } catch (e) {
        fellBack = (e as Error).message;
      }
    }
    // Reloading a module twice is harmless.
    await onceMoreIfDropped(module, timeoutMs, () => asterisk.reload(module, timeoutMs));
    const store = asterisk.liveObjects;
    if (module === 'res_pjsip' && store && (live.pjsip || live.dropLiveObjects || store.enabled)) await onceMoreIfDropped(module, timeoutMs, async () => void (await asterisk.liveObjects!.clear()));
    done.push({ module, how: 'reload', ms: performance.now() - start, ...(fellBack !== undefined ? { fellBack } : {}) });
  }
  // A reload sent before FullyBooted is only queued (DESIGN.md): wait for boot before verifying.
  await asterisk.whenFullyBooted(timeoutMs);
  return done;
}
