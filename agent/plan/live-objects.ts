/**
 * plan, the live-objects part: whether a pjsip.conf change can reach Asterisk as live objects
 * (agent/asterisk/live-objects.ts) instead of a res_pjsip reload, and the edits that do it. Pure.
 *
 * Why: a res_pjsip reload re-reads every object and then re-synchronizes qualify state for every
 * AOR and endpoint, which grows with the square of the PBX (sorcery collects each retrieval in a
 * sorted list, main/sorcery.c): 0.15 s at 1,000 extensions, 3.5-7 s at 10,000 on 2 vCPUs. Live
 * objects take a few milliseconds each. pjsip.conf is still written first and stays the whole
 * truth: the daemon folds the live objects into it later (a reload, then the family deleted).
 */
import type { PjsipComparison, PjsipObject } from './objects.js';

export type LiveObjectType = 'endpoint' | 'auth' | 'aor';

/** One step; they are sent in order. */
export type LiveObjectEdit =
  /** AMI DBPut of the object's JSON (no observer runs). */
  | { kind: 'write'; type: LiveObjectType; id: string; json: string }
  /** ARI PUT through sorcery, so res_pjsip's observers run (qualify, device state). */
  | { kind: 'create'; type: LiveObjectType; id: string; fields: Array<{ attribute: string; value: string }> }
  /** ARI DELETE through sorcery. */
  | { kind: 'delete'; type: LiveObjectType; id: string };

/** What Asterisk holds as live objects (AgentState.live). */
export interface LiveObjectsRecord {
  /** Extensions created live: in no pjsip.conf that Asterisk has loaded. */
  added: string[];
  /** Extensions of pjsip.conf that a live object overrides. */
  changed: string[];
  /**
   * Extensions removed from pjsip.conf that Asterisk still has from the file it loaded: their
   * auth is replaced by one no password matches, until the fold's reload drops them.
   */
  removed: string[];
  /** When the first of them was written. */
  since: string;
  /** When the last of them was written: the fold waits for fold_after_seconds after it. */
  updated?: string;
}

export type LiveObjectsPlan =
  | {
      edits: LiveObjectEdit[];
      record: Omit<LiveObjectsRecord, 'since' | 'updated'>;
      /** Removed extensions that stay listed, locked out, until the fold (verified by their auth). */
      lockedOut: string[];
    }
  | { reason: string };

/**
 * manager.c reads an AMI line into a 1,024-byte buffer and discards a longer one ("Line too
 * long"); `Val: ` plus the JSON stays below that.
 */
export const MAX_JSON_BYTES = 1000;

const TYPES: readonly LiveObjectType[] = ['auth', 'aor', 'endpoint'];

/**
 * The edits that take Asterisk from `pjsip.before` to `pjsip.after` without a reload, or why that
 * cannot be done. `live` is what Asterisk holds as live objects now; `lockoutCredential` is an
 * md5_cred no password matches (random, from the caller), for removed file-defined extensions.
 */
export function planLiveObjects(pjsip: PjsipComparison, live: LiveObjectsRecord | undefined, limit: number, lockoutCredential: string): LiveObjectsPlan {
  const { added, changed, removed } = pjsip;
  const touched = added.length + changed.length + removed.length;
  if (touched === 0) return { reason: 'no extension changes (a transport or other section does)' };
  if (touched > limit) return { reason: `${touched} extensions change (more than live_objects.max_extensions, ${limit})` };
  if (!sameTransports(pjsip)) return { reason: 'a transport changes' };
  const liveAdded = new Set(live?.added ?? []);
  const liveRemoved = new Set(live?.removed ?? []);

  const edits: LiveObjectEdit[] = [];
  for (const number of added) {
    if (liveRemoved.has(number)) {
      // Back before the fold: Asterisk still has its file objects, so they are overridden like
      // a changed extension's (creating them through ARI would be refused: they exist).
      const objects = objectsOf(pjsip, number);
      if ('reason' in objects) return objects;
      for (const type of TYPES) {
        const json = jsonOf(objects[type]);
        if (typeof json !== 'string') return json;
        edits.push({ kind: 'write', type, id: number, json });
      }
      continue;
    }
    const objects = objectsOf(pjsip, number);
    if ('reason' in objects) return objects;
    // Auth first, endpoint last: the endpoint names both. The auth has no observer to run.
    const auth = jsonOf(objects.auth);
    const endpoint = jsonOf(objects.endpoint);
    if (typeof auth !== 'string') return auth;
    if (typeof endpoint !== 'string') return endpoint;
    edits.push({ kind: 'write', type: 'auth', id: number, json: auth });
    edits.push({ kind: 'create', type: 'aor', id: number, fields: fieldsOf(objects.aor) });
    edits.push({ kind: 'create', type: 'endpoint', id: number, fields: fieldsOf(objects.endpoint) });
    // ARI stores the whole objectset, defaults included (Asterisk 22 then warns on every
    // REGISTER about its stir_shaken=no); the endpoint's own lines are what pjsip.conf has.
    edits.push({ kind: 'write', type: 'endpoint', id: number, json: endpoint });
  }
  for (const number of changed) {
    for (const type of TYPES) {
      const now = pjsip.object(type, number);
      const was = pjsip.objectBefore(type, number);
      if (!now) return { reason: `extension ${number} has no ${type} any more` };
      if (was && was.options.join('\n') === now.options.join('\n')) continue;
      const json = jsonOf(now);
      if (typeof json !== 'string') return json;
      edits.push({ kind: 'write', type, id: number, json });
    }
  }
  const lockedOut: string[] = [];
  for (const number of removed) {
    if (liveAdded.has(number)) {
      // Created live, so deletable live. This order leaves the hint Unavailable (measured: aor
      // first drops the contacts).
      for (const type of ['aor', 'endpoint', 'auth'] as const) edits.push({ kind: 'delete', type, id: number });
      continue;
    }
    // From the file Asterisk loaded: only a reload drops it. Until the fold, its auth takes no
    // password, so the phone can neither register nor call (401); its dialplan entries are
    // removed live by the same run.
    const auth = pjsip.objectBefore('auth', number);
    if (!auth) return { reason: `extension ${number} had no auth to lock` };
    const json = jsonOf({ ...auth, options: [...auth.options.filter((l) => !l.startsWith('md5_cred=') && !l.startsWith('password=')), `md5_cred=${lockoutCredential}`] });
    if (typeof json !== 'string') return json;
    edits.push({ kind: 'write', type: 'auth', id: number, json });
    lockedOut.push(number);
  }

  const gone = new Set(removed);
  const back = new Set(added.filter((n) => liveRemoved.has(n)));
  const nextAdded = [...new Set([...(live?.added ?? []), ...added.filter((n) => !back.has(n))])].filter((n) => !gone.has(n));
  const nextChanged = [...new Set([...(live?.changed ?? []), ...changed.filter((n) => !liveAdded.has(n)), ...back])].filter((n) => !gone.has(n));
  const nextRemoved = [...new Set([...(live?.removed ?? []), ...lockedOut])].filter((n) => !back.has(n));
  return { edits, record: { added: nextAdded, changed: nextChanged, removed: nextRemoved }, lockedOut };
}

function sameTransports(pjsip: PjsipComparison): boolean {
  if (pjsip.restartReasons.length > 0) return false;
  const text = (list: PjsipObject[]) => list.map((t) => `[${t.name}]\n${t.options.join('\n')}`).join('\n');
  return text(pjsip.transports()) === text(pjsip.transportsBefore());
}

function objectsOf(pjsip: PjsipComparison, number: string): Record<LiveObjectType, PjsipObject> | { reason: string } {
  const out: Partial<Record<LiveObjectType, PjsipObject>> = {};
  for (const type of TYPES) {
    const o = pjsip.object(type, number);
    if (!o) return { reason: `extension ${number} has no ${type}` };
    out[type] = o;
  }
  return out as Record<LiveObjectType, PjsipObject>;
}

function split(line: string): [string, string] {
  const eq = line.indexOf('=');
  return [line.slice(0, eq), line.slice(eq + 1)];
}

/** The object as ARI takes it: one entry per line, repeated `allow` lines as they are. */
function fieldsOf(o: PjsipObject): Array<{ attribute: string; value: string }> {
  return o.options.map((line) => {
    const [attribute, value] = split(line);
    return { attribute, value };
  });
}

/**
 * The object as res_sorcery_astdb stores it: a JSON object of field → string, applied in order
 * (sorcery_json_to_objectset keeps the order, so `disallow` still comes before `allow`). A JSON
 * object has one value per key: repeated `allow` lines become one comma list, which the codec
 * option takes as well (`allow=ulaw,alaw`); any other repeated key cannot be stored.
 */
export function jsonOf(o: PjsipObject): string | { reason: string } {
  const fields: Record<string, string> = {};
  for (const line of o.options) {
    const [key, value] = split(line);
    if (key in fields) {
      if (key !== 'allow') return { reason: `${o.type} ${o.name} repeats ${key}=, which a live object cannot hold` };
      fields[key] += `,${value}`;
    } else {
      fields[key] = value;
    }
  }
  const json = JSON.stringify(fields);
  if (Buffer.byteLength(json) > MAX_JSON_BYTES) return { reason: `${o.type} ${o.name} is too long for an AMI line (${Buffer.byteLength(json)} bytes of JSON)` };
  return json;
}
