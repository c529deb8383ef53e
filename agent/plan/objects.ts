/**
 * Object-level changes in pjsip.conf: which extensions are added, changed or removed, and whether
 * a transport changed in a way res_pjsip cannot apply on reload.
 *
 * Works on the text of the managed file (ours, so its shape is known) rather than on a remembered
 * state: what is on disk is what Asterisk loaded last.
 */

export interface PjsipObject {
  name: string;
  type: string;
  /** `key=value` lines in order, without `type=`. */
  options: string[];
}

export interface ObjectChanges {
  /** Extension numbers (endpoint/auth/aor sets), sorted. */
  added: string[];
  changed: string[];
  removed: string[];
  /** Transports whose change needs an Asterisk restart, with the reason. */
  restartReasons: string[];
}

/** Parses `[name]` sections with `key=value` lines; comments and blank lines are skipped. */
export function parsePjsipObjects(body: string): PjsipObject[] {
  const objects: PjsipObject[] = [];
  let current: { name: string; lines: string[] } | undefined;
  const flush = () => {
    if (!current) return;
    const typeLine = current.lines.find((l) => l.startsWith('type='));
    objects.push({
      name: current.name,
      type: typeLine ? typeLine.slice(5) : '',
      options: current.lines.filter((l) => l !== typeLine),
    });
  };
  for (const line of body.split('\n')) {
    if (line === '' || line.startsWith(';')) continue;
    const header = /^\[([^\]]+)\]/.exec(line);
    if (header) {
      flush();
      current = { name: header[1]!, lines: [] };
    } else if (current) {
      current.lines.push(line);
    }
  }
  flush();
  return objects;
}

/**
 * Options of a transport that res_pjsip applies on reload: local_net and external_* (since 16.18,
 * DESIGN.md). Anything else (protocol, bind, TLS files and method) keeps its old value until
 * Asterisk restarts: reference/asterisk-20 e_6_transport_bind_change.txt.
 */
const LIVE_TRANSPORT_OPTIONS = new Set(['local_net', 'external_media_address', 'external_signaling_address']);

function key(o: PjsipObject): string {
  return `${o.type}\u0000${o.name}`;
}

export function diffPjsipObjects(before: string, after: string): ObjectChanges {
  const old = new Map(parsePjsipObjects(before).map((o) => [key(o), o]));
  const now = new Map(parsePjsipObjects(after).map((o) => [key(o), o]));

  const extensions = (m: Map<string, PjsipObject>) =>
    new Set([...m.values()].filter((o) => o.type !== 'transport').map((o) => o.name));
  const oldExt = extensions(old);
  const newExt = extensions(now);
  const same = (a?: PjsipObject, b?: PjsipObject) => a !== undefined && b !== undefined && a.options.join('\n') === b.options.join('\n');

  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const name of newExt) {
    if (!oldExt.has(name)) added.push(name);
    else if (['endpoint', 'auth', 'aor'].some((t) => !same(old.get(`${t}\u0000${name}`), now.get(`${t}\u0000${name}`)))) changed.push(name);
  }
  for (const name of oldExt) if (!newExt.has(name)) removed.push(name);

  const restartReasons: string[] = [];
  const transports = new Set(
    [...old.values(), ...now.values()].filter((o) => o.type === 'transport').map((o) => o.name),
  );
  for (const name of [...transports].sort()) {
    const a = old.get(`transport\u0000${name}`);
    const b = now.get(`transport\u0000${name}`);
    if (!a) restartReasons.push(`transport ${name} is new`);
    else if (!b) restartReasons.push(`transport ${name} is removed`);
    else {
      const fixed = (o: PjsipObject) => o.options.filter((l) => !LIVE_TRANSPORT_OPTIONS.has(l.split('=')[0]!)).join('\n');
      if (fixed(a) !== fixed(b)) {
        const diff = b.options.filter((l) => !a.options.includes(l) && !LIVE_TRANSPORT_OPTIONS.has(l.split('=')[0]!));
        restartReasons.push(`transport ${name} changes ${diff.map((l) => l.split('=')[0]).join(', ') || 'options'}`);
      }
    }
  }

  const byNumber = (x: string, y: string) => Number(x) - Number(y) || (x < y ? -1 : x > y ? 1 : 0);
  return { added: added.sort(byNumber), changed: changed.sort(byNumber), removed: removed.sort(byNumber), restartReasons };
}
