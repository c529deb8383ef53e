/**
 * Live objects: PJSIP endpoints, auths and aors that Asterisk reads from astdb before pjsip.conf,
 * so that one extension changes without a res_pjsip reload (README, Large PBXs).
 *
 * Needs sorcery.conf `[res_pjsip]` to map each type to `astdb,pbx-agent-live` before
 * `config,pjsip.conf,criteria=type=<type>` (bootstrap.sh writes it). Sorcery asks the mappings in
 * order and returns the first object found (main/sorcery.c), so an astdb object hides the file's.
 * res_sorcery_astdb keeps an object under family `<prefix>/<type>`, key `<id>`, as a JSON object
 * of field → string (res/res_sorcery_astdb.c). The mapping is read only when res_pjsip loads,
 * i.e. when Asterisk starts: whether it is live is probed once per AMI connection.
 *
 * Two ways in, for two reasons:
 * - AMI DBPut writes the JSON directly: instant, but no sorcery observer runs. Right for a
 *   changed object (the phone stays registered and qualified) and for an auth;
 * - ARI PUT creates through sorcery, so res_pjsip's observers run: a new AOR is qualified and
 *   a new endpoint's device state (hints) is tracked. ARI DELETE likewise drops contacts and
 *   device state of a removed one.
 */
import type { LiveObjectType } from '../plan/live-objects.js';
import type { AmiClient } from './ami.js';
import { AriClient, type AriField } from './ari.js';

/** The astdb prefix of the mapping (sorcery.conf `astdb,pbx-agent-live`). */
export const LIVE_OBJECTS_FAMILY = 'pbx-agent-live';

export interface LiveObjectStore {
  /**
   * Live objects are enabled (ARI configured): every res_pjsip reload then drops the family,
   * whatever the state file says (it may have been lost, or a write may have landed late).
   */
  readonly enabled: boolean;
  /**
   * Whether Asterisk has the mapping live: probed once per AMI connection (a restart is a new
   * connection). `reason` says why not, for the log; `probed` is true when this call asked.
   */
  availability(): Promise<{ live: boolean; reason?: string; probed: boolean }>;
  /** AMI DBPut of an object's JSON: takes effect on the next lookup, no observer runs. */
  write(type: LiveObjectType, id: string, json: string): Promise<void>;
  /** ARI PUT: creates (or updates) the object through sorcery, so observers run. */
  create(type: LiveObjectType, id: string, fields: readonly AriField[]): Promise<void>;
  /** ARI DELETE through sorcery; false when there was no such object in astdb. */
  delete(type: LiveObjectType, id: string): Promise<boolean>;
  /** AMI DBDel of one object, no observer runs; false when it was not there. */
  drop(type: LiveObjectType, id: string): Promise<boolean>;
  /** AMI DBDelTree of the whole family: pjsip.conf alone again. False when it was empty. */
  clear(): Promise<boolean>;
  close(): void;
}

/** An AOR that no endpoint names (max_contacts 0 refuses every REGISTER): harmless to create. */
const PROBE_ID = 'pbx-agent-probe';

/**
 * The store over AMI and, when live objects are enabled, ARI. Without ARI it can still drop live
 * objects (after live objects were turned off, a res_pjsip reload must not leave stale ones).
 */
export function amiAriLiveObjects(client: AmiClient, ari?: AriClient): LiveObjectStore {
  const needAri = (): AriClient => {
    if (!ari) throw new Error('live objects are not enabled (asterisk.live_objects.enabled)');
    return ari;
  };
  let known: { live: boolean; reason?: string } | undefined;
  client.on('connected', () => {
    known = undefined;
  });
  return {
    availability: async () => {
      if (!ari) return { live: false, reason: 'asterisk.live_objects.enabled is false', probed: false };
      if (known) return { ...known, probed: false };
      // Not `{}`: res_sorcery_astdb fails a lookup by id of an object with no fields
      // (res/res_sorcery_astdb.c sorcery_astdb_retrieve_id), so the probe would never be found.
      await client.dbPut(`${LIVE_OBJECTS_FAMILY}/aor`, PROBE_ID, '{"max_contacts":"0"}');
      let output: string[];
      try {
        output = await client.command(`pjsip show aor ${PROBE_ID}`);
      } finally {
        await client.action({ Action: 'DBDel', Family: `${LIVE_OBJECTS_FAMILY}/aor`, Key: PROBE_ID });
      }
      // pjsip_cli.c prints "Unable to find object <id>." when no mapping has it.
      const found = output.some((line) => new RegExp(`^\\s*Aor:\\s+${PROBE_ID}\\b`).test(line));
      // ARI too, once: a wrong password or a disabled http.conf would otherwise fail every
      // change after its first object and fall back to a reload.
      const ariProblem = found ? await ari.check(PROBE_ID).then(() => undefined, (e: Error) => e.message) : undefined;
      // While Asterisk boots, res_pjsip or ARI may not be answering yet (ARI says 503): a "no"
      // then proves nothing, and is not remembered.
      if ((!found || ariProblem !== undefined) && !client.fullyBooted) return { live: false, reason: 'Asterisk has not fully booted yet', probed: false };
      known = found && ariProblem === undefined
        ? { live: true }
        : found
          ? { live: false, reason: `ARI does not answer (${ariProblem}): check http.conf, ari.conf and asterisk.live_objects` }
          : {
            live: false,
            reason:
              `Asterisk does not read PJSIP objects from astdb family ${LIVE_OBJECTS_FAMILY}: sorcery.conf lacks the mapping ` +
              '(bootstrap.sh writes it), or Asterisk has not restarted since it was added',
          };
      return { ...known, probed: true };
    },
    enabled: ari !== undefined,
    write: (type, id, json) => client.dbPut(`${LIVE_OBJECTS_FAMILY}/${type}`, id, json),
    drop: async (type, id) => (await client.action({ Action: 'DBDel', Family: `${LIVE_OBJECTS_FAMILY}/${type}`, Key: id })).response === 'Success',
    create: (type, id, fields) => needAri().putObject(type, id, fields),
    delete: (type, id) => needAri().deleteObject(type, id),
    clear: () => client.dbDelTree(LIVE_OBJECTS_FAMILY),
    close: () => ari?.close(),
  };
}
