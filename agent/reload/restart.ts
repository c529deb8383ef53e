/**
 * A restart of Asterisk for the changes a reload cannot apply (transport bind, protocol, TLS),
 * only when the operator's policy allows it and no call is up. `core restart when convenient`
 * also waits for inactivity inside Asterisk, covering a call that starts in between.
 */
import type { AsteriskControl } from '../asterisk/control.js';

export type RestartResult = 'restarted' | 'busy';

export class RestartError extends Error {}

/** `core show channels count` → the number of active calls. */
export async function activeCalls(asterisk: AsteriskControl): Promise<number> {
  const lines = await asterisk.command('core show channels count');
  const m = lines.map((l) => /^(\d+) active calls?$/.exec(l.trim())).find(Boolean);
  if (!m) throw new RestartError(`cannot tell how many calls are up: ${lines.join(' | ')}`);
  return Number(m[1]);
}

export async function restartWhenIdle(asterisk: AsteriskControl, timeoutMs: number): Promise<RestartResult> {
  if ((await activeCalls(asterisk)) > 0) return 'busy';
  const back = asterisk.whenRestarted(timeoutMs);
  await asterisk.command('core restart when convenient');
  if (!(await back)) throw new RestartError(`Asterisk did not come back within ${Math.round(timeoutMs / 1000)} s of the restart`);
  return 'restarted';
}
