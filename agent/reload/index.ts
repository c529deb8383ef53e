/**
 * reload: `Reload` of exactly the modules whose files changed, one at a time, each with a timeout.
 * Never `core reload`: it reloads everything, and reload deadlocks were reported on 20.18.2 and
 * 20.20.1 (asterisk/asterisk#1855, #2081), which a per-module timeout at least names.
 */
import { AmiError } from '../asterisk/ami.js';
import type { AsteriskControl } from '../asterisk/control.js';
import type { AsteriskModule } from '../managed-files.js';

export class ReloadError extends Error {
  constructor(
    readonly module: AsteriskModule,
    /**
     * hung: no answer in time; unavailable: Asterisk could not be reached; busy: Asterisk is
     * reloading something else or shutting down; forbidden: the AMI user may not reload;
     * refused: any other error answer. Only `refused` can be the config's fault.
     */
    readonly kind: 'hung' | 'unavailable' | 'busy' | 'forbidden' | 'refused',
    message: string,
  ) {
    super(message);
  }
}

const CONNECTION_CODES = new Set(['ami.disconnected', 'ami.closed', 'ami.unreachable']);

export interface ReloadReport {
  module: AsteriskModule;
  ms: number;
}

export async function reloadModules(
  asterisk: AsteriskControl,
  modules: readonly AsteriskModule[],
  timeoutMs: number,
): Promise<ReloadReport[]> {
  const done: ReloadReport[] = [];
  for (const module of modules) {
    const start = performance.now();
    try {
      await reloadOnce(asterisk, module, timeoutMs);
    } catch (e) {
      if (!(e instanceof AmiError) || !CONNECTION_CODES.has(e.code)) throw classify(module, e, timeoutMs);
      // The connection dropped (Asterisk restarting?): the adapter reconnects; one more try.
      // Reloading a module twice is harmless; its result is verified either way.
      try {
        await reloadOnce(asterisk, module, timeoutMs);
      } catch (again) {
        throw classify(module, again, timeoutMs);
      }
    }
    done.push({ module, ms: performance.now() - start });
  }
  // A reload sent before FullyBooted is only queued (DESIGN.md): wait for boot before verifying.
  await asterisk.whenFullyBooted(timeoutMs);
  return done;
}

async function reloadOnce(asterisk: AsteriskControl, module: AsteriskModule, timeoutMs: number) {
  await asterisk.reload(module, timeoutMs);
}

function classify(module: AsteriskModule, e: unknown, timeoutMs: number): ReloadError {
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof AmiError && e.code === 'ami.timeout') {
    return new ReloadError(module, 'hung', `reload of ${module} did not finish within ${timeoutMs / 1000} s: ${message}`);
  }
  if (e instanceof AmiError && (CONNECTION_CODES.has(e.code) || e.code === 'ami.auth_failed')) {
    return new ReloadError(module, 'unavailable', `reload of ${module}: Asterisk is not reachable: ${message}`);
  }
  if (e instanceof AmiError && (e.code === 'ami.reload_in_progress' || e.code === 'ami.shutting_down')) {
    // Asterisk has one global reload lock; with 10,000 extensions a pbx_config reload holds it for
    // ~6 s and every other reload meanwhile is answered "A reload is in progress" (reference
    // transcripts t_ and u_). Neither says anything about the config.
    return new ReloadError(module, 'busy', `reload of ${module} was put off by Asterisk: ${message}; the change stays pending and is retried`);
  }
  if (e instanceof AmiError && e.code === 'ami.permission_denied') {
    return new ReloadError(module, 'forbidden', `reload of ${module}: the AMI user may not reload (${message}); it needs write = system`);
  }
  return new ReloadError(module, 'refused', `reload of ${module} was refused: ${message}`);
}
