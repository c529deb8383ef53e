/**
 * reload: `Reload` of exactly the modules whose files changed, one at a time, each with a timeout.
 * Never `core reload`: it reloads everything, and reload deadlocks were reported on 20.18.2 and
 * 20.20.1 (asterisk/asterisk#1855, #2081), which a per-module timeout at least names.
 */
import type { AsteriskControl } from '../asterisk/control.js';
import type { AsteriskModule } from '../managed-files.js';
import type { DialplanEdit } from '../plan/dialplan.js';
import { applyDialplanEdits } from './dialplan-live.js';
import { onceMoreIfDropped } from './errors.js';

export { ReloadError } from './errors.js';

export interface ReloadReport {
  module: AsteriskModule;
  /** How: a module reload, or live dialplan edits instead of reloading pbx_config. */
  how: 'reload' | 'edits';
  ms: number;
}

/**
 * `dialplanEdits`, when given, takes pbx_config's place: the dialplan is changed entry by entry
 * (reload/dialplan-live.ts) instead of re-reading all of extensions.conf.
 */
export async function reloadModules(
  asterisk: AsteriskControl,
  modules: readonly AsteriskModule[],
  timeoutMs: number,
  dialplanEdits?: readonly DialplanEdit[],
): Promise<ReloadReport[]> {
  const done: ReloadReport[] = [];
  for (const module of modules) {
    const start = performance.now();
    if (module === 'pbx_config' && dialplanEdits) {
      await applyDialplanEdits(asterisk, dialplanEdits, timeoutMs);
      done.push({ module, how: 'edits', ms: performance.now() - start });
      continue;
    }
    // Reloading a module twice is harmless.
    await onceMoreIfDropped(module, timeoutMs, () => asterisk.reload(module, timeoutMs));
    done.push({ module, how: 'reload', ms: performance.now() - start });
  }
  // A reload sent before FullyBooted is only queued (DESIGN.md): wait for boot before verifying.
  await asterisk.whenFullyBooted(timeoutMs);
  return done;
}
