/** How a failed reload or live dialplan edit is told apart: Asterisk's fault, or the config's. */
import { AmiError } from '../asterisk/ami.js';
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

const CONNECTION_CODES: ReadonlySet<string> = new Set(['ami.disconnected', 'ami.closed', 'ami.unreachable']);

/** A failed reload (or live edit) as the kind of failure it is: only `refused` blames the config. */
export function classifyReloadFailure(module: AsteriskModule, e: unknown, timeoutMs: number): ReloadError {
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

/**
 * Runs `attempt`; if the connection dropped before an answer (Asterisk restarting?), the adapter
 * reconnects and it runs once more. Callers send only what is harmless twice (a reload, an edit
 * that sets or removes one entry); the result is verified either way. Any failure left is
 * classified for `module`.
 */
export async function onceMoreIfDropped(module: AsteriskModule, timeoutMs: number, attempt: () => Promise<void>): Promise<void> {
  try {
    await attempt();
  } catch (e) {
    if (!(e instanceof AmiError) || !CONNECTION_CODES.has(e.code)) throw classifyReloadFailure(module, e, timeoutMs);
    try {
      await attempt();
    } catch (again) {
      throw classifyReloadFailure(module, again, timeoutMs);
    }
  }
}
