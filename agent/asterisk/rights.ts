/**
 * The AMI user's rights, checked when the agent connects, so that a missing class is named
 * instead of surfacing later as a misleading symptom. Both were seen on a real Asterisk 20.6
 * (reference transcripts r_ and s_):
 * - without write `command`, every `Command` is answered "Permission denied" while `Reload`
 *   works: the change would be written and reloaded, then verification could not read it back;
 * - without read `system`, `Reload` answers "Module Reloaded" but the FullyBooted and Reload
 *   events never arrive, so every wait for them runs into its timeout.
 *
 * Write rights come from `ListCommands` (it lists only the actions the user's write classes
 * allow, manager.c action_listcommands). Read rights are not visible to the user itself; the CLI
 * command `manager show user NAME` prints them ("read perm: system,..."), which needs `command`.
 */
import type { AmiClient } from './ami.js';

export interface MissingRight {
  direction: 'read' | 'write';
  /** The manager.conf class to add, e.g. `system`. */
  class: string;
  /** What the agent cannot do without it. */
  neededFor: string;
}

/** Actions the agent sends, and the classes Asterisk registers them with (manager.c, res_pjsip). */
const REQUIRED_ACTIONS: ReadonlyArray<{ action: string; class: string; neededFor: string }> = [
  { action: 'Reload', class: 'system', neededFor: 'reloading a module after a change (Reload)' },
  { action: 'PJSIPShowEndpoint', class: 'system', neededFor: 'reading endpoints back to verify a change (PJSIPShowEndpoint)' },
  { action: 'Command', class: 'command', neededFor: 'reading transports, the dialplan and mailboxes back to verify a change (Command)' },
];

export async function missingAmiRights(client: AmiClient, username: string, timeoutMs?: number): Promise<MissingRight[]> {
  const options = timeoutMs === undefined ? {} : { timeoutMs };
  const allowed = await client.listCommands(options);
  // Every user may send Ping, Login and friends: an answer that lists nothing is one this code
  // cannot read, and no reason to stop the agent.
  if (allowed.size === 0) return [];
  const missing: MissingRight[] = [];
  for (const need of REQUIRED_ACTIONS) {
    if (!allowed.has(need.action.toLowerCase()) && !missing.some((m) => m.class === need.class && m.direction === 'write')) {
      missing.push({ direction: 'write', class: need.class, neededFor: need.neededFor });
    }
  }
  if (!allowed.has('command')) return missing; // read rights cannot be seen without it
  const lines = await client.command(`manager show user ${username}`, options);
  const readLine = lines.map((l) => /^\s*read perm:\s*(.*)$/.exec(l)?.[1]).find((v) => v !== undefined);
  if (readLine !== undefined) {
    const classes = readLine.split(',').map((c) => c.trim());
    if (!classes.includes('system') && !classes.includes('all')) {
      missing.push({ direction: 'read', class: 'system', neededFor: 'the FullyBooted and Reload events that tell when a reload has finished' });
    }
  }
  return missing;
}

/** One sentence for the operator: what is missing, for what, and where to add it. */
export function describeMissingRights(missing: readonly MissingRight[], username: string): string {
  const parts = missing.map((m) => `${m.direction} ${m.class} (needed for ${m.neededFor})`);
  const read = missing.filter((m) => m.direction === 'read').map((m) => m.class);
  const write = missing.filter((m) => m.direction === 'write').map((m) => m.class);
  const fix = [read.length ? `read = ${['system', ...read].filter((c, i, a) => a.indexOf(c) === i).join(',')}` : '', write.length ? `write = ${['system', 'command', ...write].filter((c, i, a) => a.indexOf(c) === i).join(',')}` : '']
    .filter(Boolean)
    .join(' and ');
  return `the AMI user "${username}" lacks ${parts.join('; ')}: set ${fix} in its section of /etc/asterisk/manager.d/ (or manager.conf), then run "asterisk -rx 'manager reload'"`;
}
