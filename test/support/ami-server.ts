/**
 * FakeAsterisk: a loopback AMI server that answers like the real Asterisk 20 recorded in
 * /work/shared/reference/asterisk-20/transcripts (copies of the ones replayed byte for byte are in
 * test/fixtures/ami-transcripts), and that loads pjsip.conf / rtp.conf / extensions.conf /
 * voicemail.conf / confbridge.conf from a directory standing in for /etc/asterisk with Asterisk's
 * own semantics (see fake-asterisk/config-parser.ts, fake-asterisk/pjsip.ts and
 * fake-asterisk/confbridge.ts).
 *
 * Wire format (manager.c): CRLF line endings, a blank line ends a message, ActionID echoed right
 * after Response:, events written as `Event: X` + `Privilege: system,all` (broadcast) or
 * `Event: X` + `ActionID: id` (items of a list answer). Every session handles its actions one at
 * a time, in order, like Asterisk's per-session thread: a Reload that hangs blocks the session.
 *
 * Live objects (option liveObjects, enableLiveObjects()): Asterisk's astdb (main/db.c, AMI DBPut,
 * DBGet, DBDel, DBDelTree) and the sorcery.conf mapping of this project, under which res_pjsip
 * looks endpoints, auths and aors up in astdb family `pbx-agent-live/<type>` before pjsip.conf
 * (res/res_sorcery_astdb.c, main/sorcery.c): see class LiveObjectLayer. An ARI HTTP server
 * (ari-server.ts, ariUrl) serves /ari/asterisk/config/dynamic/res_pjsip/{type}/{id} over the
 * same model (res/ari/resource_asterisk.c). Line numbers cited are those of Asterisk 20.6.0.
 *
 * Knobs for tests: hangReloads(), closeAfterNextAction(), failNextAction(), booting/finishBooting(),
 * emitEvent(), injectEventsIntoNextList(), registerContact()/unregisterContact(), restart(),
 * enableLiveObjects(), astdbPut()/astdbDel(), failNextAri().
 * Observations: actionCount(), reloadCount(), configLoadCount(), liveEndpoints(), liveState(),
 * logEntries()/logText(), astdbGet()/astdbEntries(), ariRequests().
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { AsteriskConfigParser } from './fake-asterisk/config-parser.js';
import type { ConfigVariable, LogFn, LogLevel } from './fake-asterisk/config-parser.js';
import {
  AOR_OPTIONS, AUTH_OPTIONS, defaultValues, ENDPOINT_OPTIONS, PjsipModule, TRANSPORT_OPTIONS, valueOf, type PjsipObject,
} from './fake-asterisk/pjsip.js';
import type { ReachabilityChange } from './fake-asterisk/pjsip.js';
import { DialplanModule, RtpModule, VoicemailModule } from './fake-asterisk/modules.js';
import { ConfbridgeModule } from './fake-asterisk/confbridge.js';
import { ariError, AriServer, parseJanssonTopLevel, type AriAnswer, type AriRequest, type AriUser } from './ari-server.js';
import path from 'node:path';
import { realpathSync } from 'node:fs';

export interface FakeAsteriskOptions {
  /** Directory standing in for /etc/asterisk. */
  configDir: string;
  /** AMI users, username -> secret. Default { gitops: 'gitops-secret' } (the transcripts' user). */
  users?: Record<string, string>;
  /** What CoreSettings reports. Default '20.6.0' (Ubuntu 24.04). The transcripts were 20.20.1. */
  version?: string;
  /** Start in the "not fully booted" state: no FullyBooted at login, Reloads queued. */
  booting?: boolean;
  /** PJSIP option names this build rejects as unknown (an older or differently built Asterisk). */
  unknownOptions?: string[];
  /** confbridge.conf option names this build rejects as unknown: app_confbridge then refuses the whole reload. */
  unknownConfbridgeOptions?: string[];
  /** Real Asterisk sleeps 1 s before answering a failed Login (manager.c action_login). Default 0. */
  authFailureDelayMs?: number;
  /**
   * manager.conf read/write classes per user (default: read = all, write = all). Actions need a
   * write class (ACTION_CLASSES), events reach only sessions whose read classes include theirs:
   * reference transcripts-20.6 r_ (no write command) and s_ (no read system).
   */
  permissions?: Record<string, { read: string[]; write: string[] }>;
  /** CoreSettings CoreRunUser/CoreRunGroup (the transcripts show root). Default 'asterisk'. */
  runUser?: string;
  runGroup?: string;
  /**
   * Start with sorcery.conf mapping endpoint, auth and aor to `astdb,pbx-agent-live` before
   * pjsip.conf (what bootstrap.sh writes). Default false: astdb entries in those families are
   * then ignored, as on an Asterisk without the mapping. enableLiveObjects() turns it on later.
   */
  liveObjects?: boolean;
  /** The ari.conf user the ARI server accepts (HTTP Basic). Default pbx-agent / pbx-agent-ari-secret. */
  ari?: AriUser;
  /** http.conf [general] prefix (e.g. 'asterisk'): ARI is then under /<prefix>/ari, and ariUrl ends in /<prefix>. */
  httpPrefix?: string;
}

export interface LogEntry {
  time: Date;
  level: LogLevel;
  source: string;
  message: string;
}

export interface ReceivedAction {
  session: number;
  action: string;
  /** Raw header lines, secrets included (this is a test server). */
  headers: Array<[string, string]>;
}

export interface LiveState {
  endpoints: Record<string, Record<string, string>>;
  aors: Record<string, Record<string, string>>;
  auths: Record<string, Record<string, string>>;
  transports: Record<string, Record<string, string> & { local_net: string[] }>;
  contacts: Record<string, string[]>;
  rtp: { start: number; end: number };
  dialplan: Record<string, string[]>;
  voicemail: Array<{ context: string; mailbox: string; fullname: string; email: string }>;
  /** app_confbridge profile names. */
  confbridge: { bridges: string[]; users: string[] };
}

type Fields = Array<[string, string]>;
type ListEvent = { event: string; fields: Fields };

/** An AMI request as Asterisk sees it: the raw header lines; lookups are case-insensitive. */
class Message {
  constructor(readonly lines: string[]) {}
  /** astman_get_header(): first line whose name matches, value with leading blanks skipped. */
  get(name: string): string {
    const prefix = name.toLowerCase() + ':';
    for (const l of this.lines) {
      if (l.toLowerCase().startsWith(prefix)) return l.slice(prefix.length).replace(/^[ \t]+/, '');
    }
    return '';
  }
  headers(): Array<[string, string]> {
    return this.lines.map((l) => {
      const i = l.indexOf(':');
      return i < 0 ? [l, ''] : [l.slice(0, i), l.slice(i + 1).replace(/^[ \t]+/, '')];
    });
  }
}

class Session {
  /** manager.c session inbuf: bytes read and not yet cut into lines. */
  buffer: Buffer = Buffer.alloc(0);
  lines: string[] = [];
  /** s->parsing == MESSAGE_LINE_TOO_LONG: a line of the message being read overflowed inbuf. */
  lineTooLong = false;
  /** do_message() hdr_loss: the message being read has more than AST_MAX_MANHEADERS lines. */
  headerLoss = false;
  authenticated = false;
  user = '';
  events = true;
  readClasses: ReadonlySet<string> = new Set(['all']);
  writeClasses: ReadonlySet<string> = new Set(['all']);
  /** Messages read, in order; a parse error is answered in its turn instead of being run. */
  queue: Array<{ message: Message; parseError?: string }> = [];
  busy = false;
  closed = false;
  constructor(readonly id: number, readonly socket: net.Socket) {}

  write(text: string): void {
    if (!this.closed && !this.socket.destroyed) this.socket.write(text);
  }

  /** Asterisk ends the session after Logoff or a failed Login: flush, then close. */
  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
  }
}

/**
 * The write classes each action is registered with (manager.c __init_manager, res_pjsip's
 * ast_manager_register_xml calls); an empty list means anyone logged in (authority 0).
 */
const ACTION_CLASSES: Record<string, string[]> = {
  ping: [], events: [], logoff: [], login: [], listcommands: [], challenge: [],
  command: ['command'],
  reload: ['system', 'config'],
  getconfig: ['system', 'config'],
  coresettings: ['system', 'reporting'],
  corestatus: ['system', 'reporting'],
  pjsipshowendpoints: ['system'],
  pjsipshowendpoint: ['system'],
  pjsipshowaors: ['system'],
  // pbx_config.c load_module: both with EVENT_FLAG_SYSTEM.
  dialplanextensionadd: ['system'],
  dialplanextensionremove: ['system'],
  // main/db.c:1207-1211 astdb_init().
  dbget: ['system', 'reporting'],
  dbput: ['system'],
  dbdel: ['system'],
  dbdeltree: ['system'],
};
const ACTION_NAMES: Record<string, string> = {
  ping: 'Ping', events: 'Events', logoff: 'Logoff', login: 'Login', listcommands: 'ListCommands', challenge: 'Challenge',
  command: 'Command', reload: 'Reload', getconfig: 'GetConfig', coresettings: 'CoreSettings', corestatus: 'CoreStatus',
  pjsipshowendpoints: 'PJSIPShowEndpoints', pjsipshowendpoint: 'PJSIPShowEndpoint', pjsipshowaors: 'PJSIPShowAors',
  dialplanextensionadd: 'DialplanExtensionAdd', dialplanextensionremove: 'DialplanExtensionRemove',
  dbget: 'DBGet', dbput: 'DBPut', dbdel: 'DBDel', dbdeltree: 'DBDelTree',
};
/** manager.c:1718: a session's input buffer holds 1,024 bytes of a line (inbuf[1025], one kept for the NUL). */
const AMI_INBUF_SIZE = 1024;
/** manager.h:100: the most header lines one message may have. */
const AST_MAX_MANHEADERS = 128;

/** manager.c perms[], in its order. */
const ALL_CLASSES = ['system', 'call', 'log', 'verbose', 'command', 'agent', 'user', 'config', 'dtmf', 'reporting', 'cdr', 'dialplan', 'originate', 'agi', 'cc', 'aoc', 'test', 'security', 'message'];

function mayWrite(s: Session, classes: readonly string[]): boolean {
  return s.writeClasses.has('all') || classes.some((c) => s.writeClasses.has(c));
}

function mayRead(s: Session, cls: string): boolean {
  return s.readClasses.has('all') || s.readClasses.has(cls);
}

/** Module names Asterisk 20 would find (ast_module_reload matches them with or without .so). */
const MODULES: Record<string, string> = {
  res_pjsip: 'Basic SIP resource',
  res_rtp_asterisk: 'Asterisk RTP Stack',
  pbx_config: 'Text Extension Configuration',
  app_voicemail: 'Comedian Mail (Voicemail System)',
  app_confbridge: 'Conference Bridge Application',
  chan_pjsip: 'PJSIP Channel Driver',
  res_pjsip_session: 'PJSIP Session resource',
  res_pjsip_registrar: 'PJSIP Registrar Support',
  res_pjsip_outbound_registration: 'PJSIP Outbound Registration Support',
  res_pjsip_endpoint_identifier_ip: 'PJSIP IP endpoint identifier',
  res_musiconhold: 'Music On Hold Resource',
  res_sorcery_config: 'Sorcery Configuration File Object Wizard',
  cdr: 'CDR Engine',
  logger: 'Logger',
  manager: 'Asterisk Manager Interface',
};

/** enum ast_module_reload_result: the Status of the Reload event (f_misc.txt shows 2 for NOT_FOUND). */
const RELOAD = { SUCCESS: 0, QUEUED: 1, NOT_FOUND: 2, ERROR: 3, IN_PROGRESS: 4 } as const;
type ReloadStatus = (typeof RELOAD)[keyof typeof RELOAD];

/** CLI commands this fake knows exist (for the "No such command" hint, cli.c find_best()). */
const KNOWN_COMMANDS = [
  '!', 'pjsip qualify', 'pjsip show endpoints', 'pjsip show endpoint', 'pjsip show transports', 'pjsip show transport',
  'pjsip show aors', 'pjsip show aor', 'pjsip show auths', 'pjsip show auth', 'pjsip show contacts',
  'pjsip show registrations', 'pjsip list endpoints', 'pjsip set logger', 'rtp show settings', 'rtp set debug',
  'dialplan show', 'dialplan reload', 'core show version', 'core show help', 'core show channels', 'core reload',
  'core restart now', 'core stop now', 'module reload', 'module show', 'voicemail show users', 'voicemail reload',
  'manager show connected', 'logger reload', 'confbridge show profile bridge', 'confbridge show profile user',
  'confbridge show profile bridges', 'confbridge show profile users', 'confbridge list', 'confbridge show menus',
].map((c) => c.split(' '));

export function normalizeModule(name: string): string {
  return name.trim().replace(/\.so$/i, '').toLowerCase();
}

// ---------------------------------------------------------------------------------------------
// astdb and the live-objects mapping
// ---------------------------------------------------------------------------------------------

/** The astdb prefix of this project's sorcery.conf mapping (`endpoint=astdb,pbx-agent-live`, ...). */
export const LIVE_OBJECTS_FAMILY = 'pbx-agent-live';

export type LiveObjectType = 'endpoint' | 'auth' | 'aor';
const LIVE_TYPES: readonly LiveObjectType[] = ['endpoint', 'auth', 'aor'];
const MAP_OF = { endpoint: 'endpoints', auth: 'auths', aor: 'aors' } as const;

/** The sorcery fields this fake knows per type: the option tables of fake-asterisk/pjsip.ts. */
const OPTION_TABLES = { endpoint: ENDPOINT_OPTIONS, auth: AUTH_OPTIONS, aor: AOR_OPTIONS, transport: TRANSPORT_OPTIONS } as const;
type ModelledType = keyof typeof OPTION_TABLES;

/**
 * The object types registered on res_pjsip's sorcery instance (ARI answers "objectType 'x' not
 * found" for any other). Only endpoint, auth, aor, transport and contact have objects here.
 */
const RES_PJSIP_TYPES = [
  'system', 'global', 'auth', 'transport', 'aor', 'contact', 'endpoint', 'identify', 'domain_alias', 'acl',
  'registration', 'outbound-publish', 'inbound-publication', 'asterisk-publication', 'resource_list', 'phoneprov',
];

function isModelled(type: string): type is ModelledType {
  return Object.prototype.hasOwnProperty.call(OPTION_TABLES, type);
}

function isLive(type: string): type is LiveObjectType {
  return (LIVE_TYPES as readonly string[]).includes(type);
}

/** The order listings are shown in (the ids of pjsip.conf objects are sorted, as elsewhere in this fake). */
function byId(a: PjsipObject, b: PjsipObject): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Whether sorcery's listings drop an id a later wizard also has, and sort by id: since commit
 * 336f6bd627 ("sorcery: Prevent duplicate objects"), in 20.16.0, 21.11.0, 22.6.0 and 23.0.0.
 * Before (20.6.0: main/sorcery.c:1910, a plain list container) an id in astdb and in pjsip.conf
 * is listed twice, astdb's first.
 */
function sorceryDedupesListings(version: string): boolean {
  const [major = 0, minor = 0] = version.split('.').map((n) => Number.parseInt(n, 10));
  if (major >= 23) return true;
  const since: Record<number, number> = { 20: 16, 21: 11, 22: 6 };
  return since[major] !== undefined && minor >= since[major];
}

/** main/db.c:119 MAX_DB_FIELD: "/family/key" must fit in it with its NUL. */
const MAX_DB_FIELD = 256;

function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => c.toLowerCase());
}

/**
 * SQLite's `key || '/' LIKE prefix || '/' || '%'` (main/db.c:135 and :137, the deltree and gettree
 * statements): ASCII letters in any case, `_` and `%` wildcards.
 */
function underTree(prefix: string): (key: string) => boolean {
  const source = [...asciiLower(`${prefix}/`)]
    .map((c) => (c === '%' ? '[\\s\\S]*' : c === '_' ? '[\\s\\S]' : c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  const re = new RegExp(`^${source}[\\s\\S]*$`);
  return (key) => re.test(asciiLower(`${key}/`));
}

/**
 * Asterisk's astdb (main/db.c): one sqlite table of "/family/key" → value. FakeAsterisk keeps it
 * outside its modules, so it survives restart() as /var/lib/asterisk/astdb.sqlite3 does.
 */
export class Astdb {
  private readonly rows = new Map<string, string>();
  /** Bumped by every change, so views built from the table know when they are stale. */
  generation = 0;

  constructor(private readonly log: LogFn) {}

  /** The length check every keyed call starts with (db.c:345, :392, :447, :476). */
  private fullKey(family: string, key: string): string | null {
    if (Buffer.byteLength(family) + Buffer.byteLength(key) + 2 > MAX_DB_FIELD - 1) {
      this.log('WARNING', 'db.c', `Family and key length must be less than ${MAX_DB_FIELD - 3} bytes`);
      return null;
    }
    return `/${family}/${key}`;
  }

  /** ast_db_put (db.c:339): false when the key is too long. */
  put(family: string, key: string, value: string): boolean {
    const full = this.fullKey(family, key);
    if (full === null) return false;
    this.rows.set(full, value);
    this.generation++;
    return true;
  }

  /** ast_db_get (db.c:424): the exact key, case and all. */
  get(family: string, key: string): string | undefined {
    const full = this.fullKey(family, key);
    return full === null ? undefined : this.rows.get(full);
  }

  /** ast_db_del2 (db.c:469), what AMI DBDel uses: false, with a warning, when the key is not there. */
  del2(family: string, key: string): boolean {
    const full = this.fullKey(family, key);
    if (full === null) return false;
    if (!this.rows.has(full)) {
      this.log('WARNING', 'db.c', `AstDB key ${full} does not exist`);
      return false;
    }
    return this.del(family, key);
  }

  /** ast_db_del (db.c:441), what res_sorcery_astdb uses. */
  del(family: string, key: string): boolean {
    const full = this.fullKey(family, key);
    if (full === null) return false;
    this.rows.delete(full);
    this.generation++;
    return true;
  }

  /** ast_db_deltree (db.c:501): every key under /family[/keytree]; how many went. */
  deltree(family: string, keytree = ''): number {
    const matches = family === '' ? () => true : underTree(keytree ? `/${family}/${keytree}` : `/${family}`);
    let n = 0;
    for (const key of [...this.rows.keys()]) {
      if (!matches(key)) continue;
      this.rows.delete(key);
      n++;
    }
    if (n) this.generation++;
    return n;
  }

  /** ast_db_gettree (db.c:575): the entries under /family[/keytree], full keys, ORDER BY key (bytes). */
  gettree(family: string, keytree = ''): Array<{ key: string; value: string }> {
    const matches = family === '' ? () => true : underTree(keytree ? `/${family}/${keytree}` : `/${family}`);
    return [...this.rows]
      .filter(([key]) => matches(key))
      .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      .map(([key, value]) => ({ key, value }));
  }
}

/**
 * ast_json_load_string() + ast_json_to_ast_variables() (main/json.c:818) on an astdb value:
 * null when the lookup fails there (the text does not parse as a JSON object or array, or a field
 * is not a string). An array has no fields; an empty key is skipped.
 */
function objectsetFromJson(text: string): Array<[string, string]> | null {
  const parsed = parseJanssonTopLevel(text);
  if (parsed === undefined) return null;
  if (Array.isArray(parsed)) return [];
  const fields: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '') continue;
    if (typeof value !== 'string') return null;
    fields.push([name, value]);
  }
  return fields;
}

/** PjsipModule's option handling: TypeScript-private there, reused here for objects not from pjsip.conf. */
interface PjsipBuilder {
  build(type: ModelledType, id: string, vars: ConfigVariable[]): PjsipObject | null;
}

/**
 * ast_sorcery_alloc() + ast_sorcery_objectset_apply() (main/sorcery.c:1632): the fields through
 * the same option handlers as pjsip.conf's (aco_process_var: names in any case, an unknown one or
 * a bad value fails the whole object), then the type's apply handler. null = it failed.
 */
function buildSorceryObject(pjsip: PjsipModule, type: ModelledType, id: string, fields: Array<[string, string]>): PjsipObject | null {
  const vars: ConfigVariable[] = [];
  const variable = (name: string, value: string): ConfigVariable => ({ name, value, line: 0, file: '', object: false, inherited: false });
  for (const [name, value] of fields) {
    const lower = name.toLowerCase();
    if ((lower === 'allow' || lower === 'disallow') && value.length >= 2 && value.startsWith('(') && value.endsWith(')')) {
      // main/format_cap.c:335: "(ulaw|alaw)", the way sorcery writes codecs back, first undoes all.
      vars.push(variable(lower === 'allow' ? 'disallow' : 'allow', 'all'), variable(name, value.slice(1, -1).replace(/\|/g, ',')));
    } else {
      vars.push(variable(name, value));
    }
  }
  return (pjsip as unknown as PjsipBuilder).build(type, id, vars);
}

/**
 * ast_sorcery_objectset_create() as far as this fake knows an object: every field with a value,
 * defaults included, a multi-valued one once per value (none when empty), in option-table order.
 * Write-only options (disallow, deny, ...) are left out, as sorcery leaves aliases out.
 */
function objectsetOf(obj: PjsipObject): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const spec of OPTION_TABLES[obj.type]) {
    if (!spec.key) continue;
    if (spec.multi) for (const value of obj.lists.get(spec.name) ?? []) out.push([spec.name, value]);
    else out.push([spec.name, valueOf(obj, spec.name) ?? '']);
  }
  return out;
}

/** The fields an object was made of, as the option handlers take them again (for an update of it). */
function fieldsOf(obj: PjsipObject): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of obj.values) if (!obj.lists.has(name)) out.push([name, value]);
  for (const [name, list] of obj.lists) for (const value of list) out.push([name, value]);
  return out;
}

/**
 * What this fake stores in astdb for an ARI create or update: the fields the object had, with the
 * request's applied over them, names in their canonical lower case. The real sorcery_astdb_create
 * (res_sorcery_astdb.c:66) stores ast_sorcery_objectset_json_create() (sorcery.c:1565): EVERY
 * registered field with its current value, defaults included, aliases (disallow) left out, codecs
 * as cap names "(ulaw|alaw)", a multi-valued field once with its last value (the JSON object keeps
 * one value per name). Codecs are stored that way here too when the request touches them, so that
 * an update allowing one more codec keeps the ones before it, as in Asterisk.
 */
function storedObjectset(base: Array<[string, string]>, update: Array<[string, string]>, object: PjsipObject): Record<string, string> {
  const stored: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of base) stored[name.toLowerCase()] = value;
  let codecs = false;
  for (const [name, value] of update) {
    const lower = name.toLowerCase();
    if (lower === 'type') continue; // OPT_NOOP_T: no value to write back
    if (lower === 'allow' || lower === 'disallow') codecs = true;
    else stored[lower] = value;
  }
  if (codecs) {
    delete stored['disallow'];
    stored['allow'] = object.values.get('allow') ?? '(nothing)';
  }
  return stored;
}

/** A map of layered objects: iterating lists them (no duplicates), get() and has() look one up by id. */
class LayeredView extends Map<string, PjsipObject> {
  private readonly found = new Map<string, PjsipObject | undefined>();

  constructor(listed: Iterable<PjsipObject>, private readonly lookup: (id: string) => PjsipObject | undefined) {
    super();
    for (const obj of listed) if (!super.has(obj.id)) super.set(obj.id, obj);
  }

  override get(id: string): PjsipObject | undefined {
    // An object only a listing finds (an astdb `{}`) is still given to renderers that list first
    // and look up after: pjsip.ts's `pjsip show endpoints` would otherwise meet a hole.
    if (!this.found.has(id)) this.found.set(id, this.lookup(id) ?? super.get(id));
    return this.found.get(id);
  }

  override has(id: string): boolean {
    return this.get(id) !== undefined;
  }
}

/**
 * sorcery.conf `[res_pjsip]` with `<type>=astdb,pbx-agent-live` before
 * `<type>=config,pjsip.conf,criteria=type=<type>` for endpoint, auth and aor, over one
 * PjsipModule (which goes on modelling pjsip.conf alone).
 *
 * - By id (ast_sorcery_retrieve_by_id, main/sorcery.c:1853): the wizards are asked in order and
 *   the first object found wins, astdb's before pjsip.conf's. res_sorcery_astdb has no cache: an
 *   object is read from astdb at every lookup, so a DBPut counts at once, with no reload.
 * - Listing (ast_sorcery_retrieve_by_fields with AST_RETRIEVE_FLAG_MULTIPLE, sorcery.c:1897):
 *   every wizard adds its objects to one container; see sorceryDedupesListings() for duplicates.
 * - A reload of res_pjsip re-reads pjsip.conf only; astdb objects keep winning.
 *
 * The module's `endpoints`, `auths` and `aors` become accessors: its pjsip.conf loads (wrapped in
 * fileLoad()) see and replace pjsip.conf's objects alone, everything else (AMI and CLI renderings,
 * device state, registrations, liveState) sees the layered view.
 */
class LiveObjectLayer {
  private readonly files: Record<LiveObjectType, Map<string, PjsipObject>>;
  private fileOnly = 0;
  private readonly views = new Map<LiveObjectType, { generation: number; file: Map<string, PjsipObject>; view: LayeredView }>();
  /** ast_sorcery_is_object_field_registered(): exact names (a hash of the name, strcmp). */
  private readonly registered: Record<LiveObjectType, ReadonlySet<string>>;

  constructor(
    private readonly pjsip: PjsipModule,
    private readonly astdb: Astdb,
    unknownOptions: ReadonlySet<string>,
    private readonly dedupes: boolean,
  ) {
    this.files = { endpoint: pjsip.endpoints, auth: pjsip.auths, aor: pjsip.aors };
    const fieldsOfType = (type: LiveObjectType) =>
      new Set(['type', ...OPTION_TABLES[type].map((o) => o.name).filter((n) => !unknownOptions.has(n))]);
    this.registered = { endpoint: fieldsOfType('endpoint'), auth: fieldsOfType('auth'), aor: fieldsOfType('aor') };
    for (const type of LIVE_TYPES) {
      Object.defineProperty(pjsip, MAP_OF[type], {
        configurable: true,
        enumerable: true,
        get: () => (this.fileOnly > 0 ? this.files[type] : this.view(type)),
        set: (map: Map<string, PjsipObject>) => {
          this.files[type] = map;
        },
      });
    }
  }

  /** Run a pjsip.conf load: res_sorcery_config replaces its own objects and never sees astdb's. */
  fileLoad<T>(load: () => T): T {
    this.fileOnly++;
    try {
      return load();
    } finally {
      this.fileOnly--;
    }
  }

  /**
   * sorcery_astdb_retrieve_id (res_sorcery_astdb.c:191): no key, a value that does not parse or
   * has a non-string field (:204-205), no registered field left (:206, so `{}` is never found by
   * id), or a field the option handlers refuse (:208) — each makes the object missing from astdb.
   */
  fromAstdb(type: LiveObjectType, id: string): PjsipObject | undefined {
    const raw = this.astdb.get(`${LIVE_OBJECTS_FAMILY}/${type}`, id);
    if (raw === undefined) return undefined;
    const fields = objectsetFromJson(raw);
    if (!fields) return undefined;
    const kept = this.registeredOnly(type, fields);
    if (kept.length === 0) return undefined;
    return buildSorceryObject(this.pjsip, type, id, kept) ?? undefined;
  }

  /** ast_sorcery_retrieve_by_id: astdb first, then pjsip.conf (an empty id finds nothing). */
  retrieve(type: LiveObjectType, id: string): { object: PjsipObject; from: 'astdb' | 'config' } | undefined {
    if (id === '') return undefined;
    const fromAstdb = this.fromAstdb(type, id);
    if (fromAstdb) return { object: fromAstdb, from: 'astdb' };
    const fromFile = this.files[type].get(id);
    return fromFile ? { object: fromFile, from: 'config' } : undefined;
  }

  /** The registered fields of an object's astdb value, for an ARI update to apply over. */
  storedFields(type: LiveObjectType, id: string): Array<[string, string]> {
    return this.registeredOnly(type, objectsetFromJson(this.astdb.get(`${LIVE_OBJECTS_FAMILY}/${type}`, id) ?? '') ?? []);
  }

  /**
   * What PJSIPShowEndpoints / PJSIPShowAors list: astdb's objects, then pjsip.conf's; an id in
   * both twice (astdb's first) before 20.16, once and sorted by id from then on.
   */
  listing(type: LiveObjectType): PjsipObject[] {
    const all = [...this.astdbListing(type), ...[...this.files[type].values()].sort(byId)];
    if (!this.dedupes) return all;
    const seen = new Set<string>();
    return all.filter((o) => !seen.has(o.id) && seen.add(o.id)).sort(byId);
  }

  /**
   * sorcery_astdb_retrieve_fields_common (res_sorcery_astdb.c:135), entries in key order: a value
   * that does not parse or has a non-string field (:155, :159), or an object the option handlers
   * refuse (:170), ends the whole astdb part of the listing; the objects before it stay. Unlike a
   * lookup by id, an objectset with no registered field left is fine here (defaults only).
   */
  private astdbListing(type: LiveObjectType): PjsipObject[] {
    const family = `${LIVE_OBJECTS_FAMILY}/${type}`;
    const out: PjsipObject[] = [];
    for (const { key, value } of this.astdb.gettree(family)) {
      const fields = objectsetFromJson(value);
      if (!fields) break;
      const object = buildSorceryObject(this.pjsip, type, key.slice(family.length + 2), this.registeredOnly(type, fields));
      if (!object) break;
      out.push(object);
    }
    return out;
  }

  /** sorcery_astdb_filter_objectset (res_sorcery_astdb.c:93): unregistered fields are dropped silently. */
  private registeredOnly(type: LiveObjectType, fields: Array<[string, string]>): Array<[string, string]> {
    return fields.filter(([name]) => this.registered[type].has(name));
  }

  /** The layered map of a type, rebuilt when astdb or pjsip.conf's objects changed. */
  private view(type: LiveObjectType): LayeredView {
    const file = this.files[type];
    const cached = this.views.get(type);
    if (cached && cached.generation === this.astdb.generation && cached.file === file) return cached.view;
    const listed = [...this.astdbListing(type), ...file.values()]; // astdb's first: it wins a duplicate id
    const view = new LayeredView(listed.sort(byId), (id) => this.retrieve(type, id)?.object);
    this.views.set(type, { generation: this.astdb.generation, file, view });
    return view;
  }
}

/** A fixed-width column of the res_pjsip CLI: `%-*.*s` (padded and cut). */
function column(s: string, width: number): string {
  const w = Math.max(0, width);
  return s.length >= w ? s.slice(0, w) : s + ' '.repeat(w - s.length);
}

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}

export class FakeAsterisk {
  readonly configDir: string;
  private readonly users: Record<string, string>;
  private readonly permissions: Record<string, { read: string[]; write: string[] }>;
  private shuttingDownState = false;
  private readonly version: string;
  private readonly authFailureDelayMs: number;
  private readonly runUser: string;
  private readonly runGroup: string;

  private server: net.Server | null = null;
  private listenPort = 0;
  private sessions = new Set<Session>();
  private nextSessionId = 1;

  private pjsip!: PjsipModule;
  private readonly unknownOptions: ReadonlySet<string>;
  private rtp!: RtpModule;
  private dialplan!: DialplanModule;
  private voicemail!: VoicemailModule;
  private confbridge!: ConfbridgeModule;
  private readonly unknownConfbridgeOptions: ReadonlySet<string>;
  /** Set by doReload when a module refused its configuration (AST_MODULE_RELOAD_ERROR). */
  private reloadFailed = false;

  private bootingState: boolean;
  private queuedReloads: Array<string | null> = [];
  private startedAt = new Date();
  private lastReloadAt = new Date();
  private reloadInProgress = false;
  private hangModule: string | null = null;
  private hung: Array<() => void> = [];
  private closeAfter: { answer: boolean; action?: string } | null = null;
  private failures: Array<{ action: string; message: string }> = [];
  private injected: ListEvent[] = [];

  private readonly log: LogEntry[] = [];
  private readonly received: ReceivedAction[] = [];
  private readonly actionCounts = new Map<string, number>();
  private readonly reloadCounts = new Map<string, number>();
  /** Contacts survive restarts (astdb); kept here so restart() can hand them to the new module. */
  private contactsStore: PjsipModule['contacts'] | null = null;
  /** astdb itself: kept here, outside the modules, so it survives restarts. */
  private readonly astdb: Astdb;
  /** sorcery.conf has the live-objects mapping: res_pjsip reads it when Asterisk (re)starts. */
  private liveObjectsConfigured: boolean;
  /** The running res_pjsip's mapping; null when it has none (astdb is then not consulted). */
  private liveLayer: LiveObjectLayer | null = null;
  /** While a pjsip.conf load runs under the mapping: log lines its file-only view gets wrong. */
  private pjsipLogFilter: ((source: string, message: string) => boolean) | null = null;
  private readonly ari: AriServer;

  constructor(options: FakeAsteriskOptions) {
    this.configDir = realpathSync(path.resolve(options.configDir));
    this.users = options.users ?? { gitops: 'gitops-secret' };
    this.permissions = options.permissions ?? {};
    this.version = options.version ?? '20.6.0';
    this.bootingState = options.booting ?? false;
    this.authFailureDelayMs = options.authFailureDelayMs ?? 0;
    this.runUser = options.runUser ?? 'asterisk';
    this.runGroup = options.runGroup ?? 'asterisk';
    this.unknownOptions = new Set(options.unknownOptions ?? []);
    this.unknownConfbridgeOptions = new Set((options.unknownConfbridgeOptions ?? []).map((o) => o.toLowerCase()));
    this.astdb = new Astdb((level, source, message) => this.addLog(level, source, message));
    this.liveObjectsConfigured = options.liveObjects ?? false;
    this.ari = new AriServer(
      {
        fullyBooted: () => !this.bootingState,
        getObject: (configClass, type, id) => this.ariGetObject(configClass, type, id),
        updateObject: (configClass, type, id, body) => this.ariUpdateObject(configClass, type, id, body),
        deleteObject: (configClass, type, id) => this.ariDeleteObject(configClass, type, id),
      },
      // main/http.c: the Server header is "Asterisk/<version>" unless http.conf servername says otherwise.
      {
        users: [options.ari ?? { username: 'pbx-agent', password: 'pbx-agent-ari-secret' }],
        serverName: `Asterisk/${this.version}`,
        ...(options.httpPrefix ? { prefix: options.httpPrefix } : {}),
      },
    );
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle
  // ------------------------------------------------------------------------------------------

  /**
   * Load every module's config like a fresh Asterisk, then listen on 127.0.0.1 (port 0 = any),
   * AMI on the port returned and ARI (HTTP) on the port of ariUrl.
   */
  async start(port = 0): Promise<number> {
    // A stop() while a reload hung abandons that reload: nothing holds the reload lock any more.
    this.reloadInProgress = false;
    this.queuedReloads = [];
    this.bootModules();
    this.server = net.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(port || this.listenPort || 0, '127.0.0.1', () => resolve());
    });
    const addr = this.server.address();
    if (!addr || typeof addr === 'string') throw new Error('no address');
    this.listenPort = addr.port;
    await this.ari.start();
    return this.listenPort;
  }

  get port(): number {
    return this.listenPort;
  }

  /** Drop every connection and stop listening. */
  async stop(): Promise<void> {
    clearTimeout(this.restartWaiter);
    this.restartWaiter = undefined;
    this.releaseHung();
    for (const s of this.sessions) {
      s.closed = true;
      s.socket.destroy();
    }
    this.sessions.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await this.ari.stop();
  }

  /**
   * A restart: every connection dropped, the port closed and reopened, all config read again
   * with startup semantics (a duplicate endpoint at startup means zero endpoints, k_startup_dup.txt).
   * Registered contacts survive (they are in astdb), and so does all of astdb. `liveObjects`:
   * sorcery.conf gained (true) or lost (false) the live-objects mapping before this restart.
   */
  async restart(options: { booting?: boolean; liveObjects?: boolean } = {}): Promise<void> {
    await this.stop();
    this.bootingState = options.booting ?? false;
    if (options.liveObjects !== undefined) this.liveObjectsConfigured = options.liveObjects;
    await this.start(this.listenPort);
  }

  /**
   * sorcery.conf gets the live-objects mapping (bootstrap.sh writes it) and Asterisk restarts, the
   * only way res_pjsip reads it: from now on astdb family pbx-agent-live/<type> comes before
   * pjsip.conf. Same as restart({ liveObjects: true }).
   */
  async enableLiveObjects(): Promise<void> {
    await this.restart({ liveObjects: true });
  }

  /** Whether the running Asterisk has the live-objects mapping. */
  get liveObjects(): boolean {
    return this.liveLayer !== null;
  }

  private bootModules(): void {
    const logFn = (level: LogLevel, source: string, message: string) => {
      if (!this.pjsipLogFilter?.(source, message)) this.addLog(level, source, message);
    };
    const contacts = this.contactsStore;
    this.pjsip = new PjsipModule(this.configDir, logFn, this.unknownOptions);
    if (contacts) for (const [k, v] of contacts) this.pjsip.contacts.set(k, v);
    this.contactsStore = this.pjsip.contacts;
    this.rtp = new RtpModule(this.configDir, logFn);
    this.dialplan = new DialplanModule(this.configDir, logFn);
    this.voicemail = new VoicemailModule(this.configDir, logFn);
    this.confbridge = new ConfbridgeModule(this.configDir, logFn, this.unknownConfbridgeOptions);
    this.pjsip.start();
    this.rtp.start();
    this.dialplan.start();
    this.voicemail.start();
    this.confbridge.start();
    // res_pjsip reads sorcery.conf once, when it loads.
    this.liveLayer = this.liveObjectsConfigured
      ? new LiveObjectLayer(this.pjsip, this.astdb, this.unknownOptions, sorceryDedupesListings(this.version))
      : null;
    this.startedAt = new Date();
    this.lastReloadAt = this.startedAt;
  }

  // ------------------------------------------------------------------------------------------
  // Knobs
  // ------------------------------------------------------------------------------------------

  /**
   * Reloads of this module (or of everything, for a Reload without Module) never answer, and
   * hold Asterisk's reload lock: other Reloads get "A reload is in progress". null releases the
   * hung reloads (they then complete and answer, if their session is still open).
   */
  /** Calls up right now, as `core show channels count` reports them. */
  activeCallCount = 0;
  callsProcessed = 0;
  /** How many `core restart ...` commands arrived. */
  restartRequests = 0;
  private restartWaiter: NodeJS.Timeout | undefined;

  private restartWhenIdle(): void {
    if (this.restartWaiter) return;
    const attempt = () => {
      if (this.activeCallCount > 0) {
        this.restartWaiter = setTimeout(attempt, 20);
        return;
      }
      this.restartWaiter = undefined;
      void this.restart();
    };
    this.restartWaiter = setTimeout(attempt, 10);
  }

  hangReloads(module: string | null): void {
    this.hangModule = module === null ? null : normalizeModule(module);
    if (module === null) this.releaseHung();
  }

  private releaseHung(): void {
    const hung = this.hung;
    this.hung = [];
    for (const release of hung) release();
  }

  /**
   * The next action (any session; or the next one with this name) is answered (unless
   * answer=false) and then the connection closes.
   */
  closeAfterNextAction(options: { answer?: boolean; action?: string } = {}): void {
    this.closeAfter = { answer: options.answer ?? true, ...(options.action ? { action: options.action.toLowerCase() } : {}) };
  }

  /** The next action with this name ('*' = any) is answered `Response: Error` with this message. */
  failNextAction(action: string, message = 'Internal failure'): void {
    this.failures.push({ action: action.toLowerCase(), message });
  }

  /**
   * Asterisk on its way down (`core stop gracefully` waiting for calls): every action is answered
   * "Asterisk is shutting down" (manager.c process_message, transcript u_).
   */
  shuttingDown(on = true): void {
    this.shuttingDownState = on;
  }

  get booting(): boolean {
    return this.bootingState;
  }

  /** End the boot: run the queued reloads, then send FullyBooted to every session. */
  async finishBooting(): Promise<void> {
    this.bootingState = false;
    const queued = this.queuedReloads;
    this.queuedReloads = [];
    const seen = new Set<string>();
    for (const m of queued) {
      const key = m === null ? '*' : normalizeModule(m);
      if (seen.has(key)) continue;
      seen.add(key);
      this.broadcastChanges(this.doReload(m));
    }
    this.broadcast('FullyBooted', [
      ['Status', 'Fully Booted'],
      ['Uptime', String(this.uptime())],
      ['LastReload', String(this.sinceReload())],
    ]);
  }

  /** Broadcast an unsolicited event (e.g. PeerStatus) to every logged-in session with events on. */
  emitEvent(event: string, fields: Fields | Record<string, string> = []): void {
    this.broadcast(event, Array.isArray(fields) ? fields : Object.entries(fields));
  }

  /** The next list answer (PJSIPShowEndpoints/Aors/Endpoint) gets these events between its items. */
  injectEventsIntoNextList(events: Array<{ event: string; fields: Fields | Record<string, string> }>): void {
    this.injected = events.map((e) => ({ event: e.event, fields: Array.isArray(e.fields) ? e.fields : Object.entries(e.fields) }));
  }

  /** A device registered: contact stored, PeerStatus/ContactStatus events as in j_register_events.txt. */
  registerContact(aor: string, uri: string, userAgent = 'sipp-test'): void {
    const changes = this.pjsip.register(aor, uri, userAgent);
    this.broadcastChanges(changes);
    for (const ep of this.pjsip.endpointsOfAor(aor)) {
      this.broadcast('ContactStatus', [['URI', uri], ['ContactStatus', 'NonQualified'], ['AOR', aor], ['EndpointName', ep], ['RoundtripUsec', '0']]);
    }
  }

  /** A contact expired or unregistered (m_*.txt shows PeerStatus Unreachable + ContactStatus Removed). */
  unregisterContact(aor: string, uri: string): void {
    const endpoints = this.pjsip.endpointsOfAor(aor);
    const changes = this.pjsip.unregister(aor, uri);
    this.broadcastChanges(changes);
    for (const ep of endpoints) {
      this.broadcast('ContactStatus', [['URI', uri], ['ContactStatus', 'Removed'], ['AOR', aor], ['EndpointName', ep], ['RoundtripUsec', '0']]);
    }
  }

  /** Write astdb behind AMI's back, as `database put` on the CLI would: no action is counted. */
  astdbPut(family: string, key: string, value: string): void {
    if (!this.astdb.put(family, key, value)) throw new Error(`astdb refuses /${family}/${key}: too long`);
  }

  /** Delete an astdb key behind AMI's back; false when it was not there. */
  astdbDel(family: string, key: string): boolean {
    return this.astdb.get(family, key) !== undefined && this.astdb.del(family, key);
  }

  /** The next ARI request with this method ('*' = any) is answered with this status and message. */
  failNextAri(method: string, status: number, message = 'Internal failure'): void {
    this.ari.failNext(method, status, message);
  }

  /** The id Asterisk gives a registered contact: `<aor>;@<md5 of the URI>` (res_pjsip/location.c:364). */
  static contactId(aor: string, uri: string): string {
    return `${aor};@${md5(uri)}`;
  }

  // ------------------------------------------------------------------------------------------
  // Observations
  // ------------------------------------------------------------------------------------------

  /** An astdb value, undefined when the key is not there. */
  astdbGet(family: string, key: string): string | undefined {
    return this.astdb.get(family, key);
  }

  /** All of astdb as `database show` lists it: [full key "/family/key", value], ordered by key. */
  astdbEntries(): Array<[string, string]> {
    return this.astdb.gettree('').map(({ key, value }) => [key, value]);
  }

  /**
   * Where Asterisk's HTTP server listens, e.g. http://127.0.0.1:40123 (or .../<httpPrefix>):
   * ARI requests go to <ariUrl>/ari/..., as the agent's asterisk.live_objects.ari_url.
   */
  get ariUrl(): string {
    return this.ari.url;
  }

  /** Every HTTP request the ARI server received (any path, authenticated or not), oldest first. */
  ariRequests(): AriRequest[] {
    return this.ari.requests();
  }

  /** Actions received with this name (case-insensitive), any session, logged in or not. */
  actionCount(action: string): number {
    return this.actionCounts.get(action.toLowerCase()) ?? 0;
  }

  /** Reload actions (and `module reload` commands) received for a module ('res_pjsip.so' = 'res_pjsip'); no argument = all. */
  reloadCount(module?: string): number {
    if (module === undefined) return [...this.reloadCounts.values()].reduce((a, b) => a + b, 0);
    return this.reloadCounts.get(normalizeModule(module)) ?? 0;
  }

  /** How many times a module really re-read its file (unchanged-file skips do not count). */
  configLoadCount(module: 'res_pjsip' | 'res_rtp_asterisk' | 'pbx_config' | 'app_voicemail' | 'app_confbridge'): number {
    return { res_pjsip: this.pjsip, res_rtp_asterisk: this.rtp, pbx_config: this.dialplan, app_voicemail: this.voicemail, app_confbridge: this.confbridge }[module].loads;
  }

  actionsReceived(): ReceivedAction[] {
    return [...this.received];
  }

  /** Names of the endpoints Asterisk has right now, sorted. */
  liveEndpoints(): string[] {
    return [...this.pjsip.endpoints.keys()].sort();
  }

  liveState(): LiveState {
    const dump = (m: Map<string, PjsipObject>) =>
      Object.fromEntries([...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, obj]) => [id, Object.fromEntries([...defaultValues(obj.type), ...obj.values])]));
    const transports: LiveState['transports'] = {};
    for (const [id, t] of this.pjsip.transports) {
      transports[id] = Object.assign(Object.fromEntries([...defaultValues(t.type), ...t.values]), { local_net: [...(t.lists.get('local_net') ?? [])] });
    }
    return {
      endpoints: dump(this.pjsip.endpoints),
      aors: dump(this.pjsip.aors),
      auths: dump(this.pjsip.auths),
      transports,
      contacts: Object.fromEntries([...this.pjsip.contacts].map(([aor, cs]) => [aor, cs.map((c) => c.uri)])),
      rtp: { start: this.rtp.rtpStart, end: this.rtp.rtpEnd },
      dialplan: Object.fromEntries([...this.dialplan.contexts].map(([name, ctx]) => [name, ctx.extensions.map((e) => e.name)])),
      voicemail: this.voicemail.mailboxes.map(({ context, mailbox, fullname, email }) => ({ context, mailbox, fullname, email })),
      confbridge: { bridges: [...this.confbridge.bridges.keys()].sort(), users: [...this.confbridge.users.keys()].sort() },
    };
  }

  /** What "Asterisk" logged (ERROR/WARNING/NOTICE/VERBOSE), oldest first. */
  logEntries(level?: LogLevel): LogEntry[] {
    return this.log.filter((e) => !level || e.level === level);
  }

  /** The log as messages.log lines (`[time] LEVEL[tid] source: message`). */
  logText(): string {
    return this.log.map((e) => `[${formatLogTime(e.time)}] ${e.level}[1000] ${e.source}: ${e.message}`).join('\n');
  }

  clearLog(): void {
    this.log.length = 0;
  }

  connectionCount(): number {
    return this.sessions.size;
  }

  private addLog(level: LogLevel, source: string, message: string): void {
    this.log.push({ time: new Date(), level, source, message });
  }

  // ------------------------------------------------------------------------------------------
  // Sessions and framing
  // ------------------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    const session = new Session(this.nextSessionId++, socket);
    this.sessions.add(session);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(session, chunk));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      session.closed = true;
      this.sessions.delete(session);
    });
    session.write(`Asterisk Call Manager/${this.amiVersion()}\r\n`);
  }

  /**
   * manager.c get_input() and do_message(): a line ends in \r\n or \n, an empty line ends the
   * message. A line must fit the session's 1,024-byte input buffer (manager.c:1718 inbuf[1025],
   * get_input() manager.c:7427): a longer one is discarded but for the buffer's last byte, and the
   * whole message is then answered "Failed to parse message: line too long" (manager.c:7564)
   * instead of being run. A message of more than AST_MAX_MANHEADERS (128, manager.h:100) lines is
   * answered "Too many lines in message or allocation failure" (manager.c:7555).
   */
  private onData(s: Session, chunk: Buffer): void {
    s.buffer = s.buffer.length ? Buffer.concat([s.buffer, chunk]) : chunk;
    for (;;) {
      const cap = Math.min(s.buffer.length, AMI_INBUF_SIZE);
      let line: string | null = null;
      for (let x = 0; x < cap; x++) {
        const b = s.buffer[x];
        const cr = b === 0x0d && x + 1 < cap && s.buffer[x + 1] === 0x0a ? 2 : b === 0x0a ? 1 : 0;
        if (!cr) continue;
        line = s.buffer.subarray(0, x).toString('utf8');
        s.buffer = s.buffer.subarray(x + cr);
        break;
      }
      if (line === null) {
        if (s.buffer.length < AMI_INBUF_SIZE) break;
        this.addLog('WARNING', 'manager.c', `Discarding message from 127.0.0.1. Line too long: ${s.buffer.subarray(0, 25).toString('utf8')}...`);
        // "keep the last character in case we are in the middle of a CRLF"
        s.buffer = s.buffer.subarray(AMI_INBUF_SIZE - 1);
        s.lineTooLong = true;
        continue;
      }
      if (line !== '') {
        if (s.lines.length < AST_MAX_MANHEADERS) s.lines.push(line);
        else s.headerLoss = true;
        continue;
      }
      const message = new Message(s.lines);
      s.lines = [];
      if (s.headerLoss) {
        // The line-too-long state is not reset on this path (manager.c:7553): it spoils the next message too.
        s.queue.push({ message, parseError: 'Too many lines in message or allocation failure' });
        s.headerLoss = false;
      } else if (s.lineTooLong) {
        s.queue.push({ message, parseError: 'Failed to parse message: line too long' });
        s.lineTooLong = false;
      } else {
        s.queue.push({ message });
      }
    }
    void this.pump(s);
  }

  /** One action at a time per session, in order (Asterisk's session thread). */
  private async pump(s: Session): Promise<void> {
    if (s.busy) return;
    s.busy = true;
    try {
      let next: Session['queue'][number] | undefined;
      while (!s.closed && (next = s.queue.shift())) {
        if (next.parseError) this.sendError(s, next.message, next.parseError); // never run, never counted
        else await this.process(s, next.message);
      }
    } finally {
      s.busy = false;
    }
  }

  private async process(s: Session, m: Message): Promise<void> {
    const action = m.get('Action');
    this.received.push({ session: s.id, action, headers: m.headers() });
    this.actionCounts.set(action.toLowerCase(), (this.actionCounts.get(action.toLowerCase()) ?? 0) + 1);

    const closeAfter = this.closeAfter && (!this.closeAfter.action || this.closeAfter.action === action.toLowerCase()) ? this.closeAfter : null;
    if (closeAfter) this.closeAfter = null;
    if (closeAfter && !closeAfter.answer) {
      s.end();
      return;
    }
    await this.dispatch(s, m, action);
    if (closeAfter) s.end();
  }

  private async dispatch(s: Session, m: Message, action: string): Promise<void> {
    if (!action) return this.sendError(s, m, 'Missing action in request');
    if (this.shuttingDownState) return this.sendError(s, m, 'Asterisk is shutting down');
    const lower = action.toLowerCase();
    if (!s.authenticated && lower !== 'login' && lower !== 'logoff' && lower !== 'challenge') {
      return this.sendError(s, m, 'Permission denied');
    }
    const needs = ACTION_CLASSES[lower];
    if (s.authenticated && needs && needs.length > 0 && !mayWrite(s, needs)) return this.sendError(s, m, 'Permission denied');
    const failure = this.failures.findIndex((f) => f.action === '*' || f.action === lower);
    if (failure >= 0) {
      const [f] = this.failures.splice(failure, 1);
      return this.sendError(s, m, f?.message ?? 'Internal failure');
    }
    switch (lower) {
      case 'login': return this.login(s, m);
      case 'logoff': return this.logoff(s, m);
      case 'challenge': return this.sendError(s, m, 'Must specify AuthType');
      case 'ping': return this.ping(s, m);
      case 'events': return this.eventsAction(s, m);
      case 'coresettings': return this.coreSettings(s, m);
      case 'corestatus': return this.coreStatus(s, m);
      case 'command': return this.command(s, m);
      case 'reload': return this.reloadAction(s, m);
      case 'getconfig': return this.getConfig(s, m);
      case 'pjsipshowendpoints': return this.showEndpoints(s, m);
      case 'pjsipshowendpoint': return this.showEndpoint(s, m);
      case 'pjsipshowaors': return this.showAors(s, m);
      case 'listcommands': return this.listCommands(s, m);
      case 'dialplanextensionadd': return this.dialplanExtensionAdd(s, m);
      case 'dialplanextensionremove': return this.dialplanExtensionRemove(s, m);
      case 'dbput': return this.dbPut(s, m);
      case 'dbget': return this.dbGet(s, m);
      case 'dbdel': return this.dbDel(s, m);
      case 'dbdeltree': return this.dbDelTree(s, m);
      default:
        return this.sendError(s, m, `Invalid/unknown command: ${action}. Use Action: ListCommands to show available commands.`);
    }
  }

  // -- answer helpers (manager.c astman_send_response_full and friends) --

  private idLine(m: Message): string {
    const id = m.get('ActionID');
    return id ? `ActionID: ${id}\r\n` : '';
  }

  private sendError(s: Session, m: Message, message: string): void {
    s.write(`Response: Error\r\n${this.idLine(m)}Message: ${message}\r\n\r\n`);
  }

  private sendAck(s: Session, m: Message, message: string): void {
    s.write(`Response: Success\r\n${this.idLine(m)}Message: ${message}\r\n\r\n`);
  }

  /** astman_start_ack() + headers + blank line. */
  private sendFields(s: Session, m: Message, fields: Fields, response = 'Success'): void {
    s.write(`Response: ${response}\r\n${this.idLine(m)}${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  }

  private listAck(s: Session, m: Message, message: string): void {
    s.write(`Response: Success\r\n${this.idLine(m)}EventList: start\r\nMessage: ${message}\r\n\r\n`);
  }

  private listItem(s: Session, m: Message, event: string, fields: Fields): void {
    s.write(`Event: ${event}\r\n${this.idLine(m)}${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`);
  }

  private listComplete(s: Session, m: Message, event: string, count: number): void {
    s.write(`Event: ${event}\r\n${this.idLine(m)}EventList: Complete\r\nListItems: ${count}\r\n\r\n`);
  }

  /** Write items, slipping any injected unrelated events in after the first item. */
  private listItems(s: Session, m: Message, items: ListEvent[]): void {
    const injected = this.injected;
    this.injected = [];
    items.forEach((item, i) => {
      this.listItem(s, m, item.event, item.fields);
      if (i === 0) for (const e of injected) s.write(formatEvent(e.event, e.fields));
    });
    if (items.length === 0) for (const e of injected) s.write(formatEvent(e.event, e.fields));
  }

  /** manager_event(): to every logged-in session that wants events. */
  private broadcast(event: string, fields: Fields): void {
    // Every event the fake sends (FullyBooted, Reload, PeerStatus, ...) is of class system.
    const text = formatEvent(event, fields);
    for (const s of this.sessions) if (s.authenticated && s.events && mayRead(s, 'system')) s.write(text);
  }

  private broadcastChanges(changes: ReachabilityChange[]): void {
    for (const c of changes) {
      this.broadcast('PeerStatus', [['ChannelType', 'PJSIP'], ['Peer', `PJSIP/${c.endpoint}`], ['PeerStatus', c.status]]);
    }
  }

  // -- actions --

  private async login(s: Session, m: Message): Promise<void> {
    if (s.authenticated) return this.sendAck(s, m, 'Already authenticated');
    const user = m.get('Username');
    const secret = m.get('Secret');
    const expected = Object.prototype.hasOwnProperty.call(this.users, user) ? this.users[user] : undefined;
    if (!user || expected === undefined || expected !== secret) {
      this.addLog('NOTICE', 'manager.c', `${s.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1'} failed to authenticate as '${user}'`);
      if (this.authFailureDelayMs > 0) await new Promise((r) => setTimeout(r, this.authFailureDelayMs));
      this.sendError(s, m, 'Authentication failed');
      s.end(); // manager.c: action_login returns -1, the session is closed (README)
      return;
    }
    s.authenticated = true;
    s.user = user;
    const perms = this.permissions[user];
    if (perms) {
      s.readClasses = new Set(perms.read);
      s.writeClasses = new Set(perms.write);
    }
    const events = m.get('Events');
    if (events) s.events = !/^(off|no|false|0)$/i.test(events.trim());
    this.addLog('VERBOSE', 'manager.c', `Manager '${user}' logged on from 127.0.0.1`);
    this.sendAck(s, m, 'Authentication accepted');
    if (s.events && mayRead(s, 'system') && !this.bootingState) {
      s.write(formatEvent('FullyBooted', [
        ['Uptime', String(this.uptime())],
        ['LastReload', String(this.sinceReload())],
        ['Status', 'Fully Booted'],
      ]));
    }
  }

  /** manager.c action_listcommands: the actions the user's write classes allow, "Name: synopsis (Priv: classes)". */
  /** pbx_config.c manager_dialplan_extension_add, answers as in transcript p_. */
  private dialplanExtensionAdd(s: Session, m: Message): void {
    const [context, exten, priority, app] = ['Context', 'Extension', 'Priority', 'Application'].map((h) => m.get(h) ?? '');
    if (!context || !exten || !priority || !app) {
      return this.sendError(s, m, 'Context, Extension, Priority, and Application must be defined for DialplanExtensionAdd.');
    }
    const prio = priority === 'hint' ? 'hint' : /^\d+$/.test(priority) ? Number(priority) : undefined;
    if (prio === undefined) return this.sendError(s, m, 'The priority specified was invalid.');
    const replace = /^(yes|true|y|t|1|on)$/i.test(m.get('Replace') ?? '');
    const result = this.dialplan.addEntry(context, exten, prio, app, m.get('ApplicationData') ?? '', replace);
    if (result === 'exists') return this.sendError(s, m, 'That extension and priority already exist at that context');
    this.sendAck(s, m, 'Added requested extension');
  }

  /** pbx_config.c manager_dialplan_extension_remove, answers as in transcript p_. */
  private dialplanExtensionRemove(s: Session, m: Message): void {
    const context = m.get('Context') ?? '';
    const exten = m.get('Extension') ?? '';
    if (!context || !exten) return this.sendError(s, m, 'Context and Extension must be provided for DialplanExtensionRemove');
    const priority = m.get('Priority') ?? '';
    const prio = priority === '' ? undefined : priority === 'hint' ? 'hint' : /^[1-9]\d*$/.test(priority) ? Number(priority) : null;
    if (prio === null) return this.sendError(s, m, 'The priority specified was invalid.');
    if (!this.dialplan.removeEntry(context, exten, prio)) return this.sendError(s, m, 'Failed to remove requested extension');
    this.sendAck(s, m, prio === undefined ? 'Removed the requested extension' : 'Removed the requested priority from the extension');
  }

  // -- astdb (main/db.c) --

  /** main/db.c:927 manager_dbput. A write to a live-objects family counts at the next lookup; no observer runs. */
  private dbPut(s: Session, m: Message): void {
    const family = m.get('Family');
    const key = m.get('Key');
    if (!family) return this.sendError(s, m, 'No family specified');
    if (!key) return this.sendError(s, m, 'No key specified');
    if (!this.astdb.put(family, key, m.get('Val'))) return this.sendError(s, m, 'Failed to update entry');
    this.sendAck(s, m, 'Updated database successfully');
  }

  /**
   * main/db.c:952 manager_dbget: a one-item event list. The ActionID of the DBGetResponse event
   * comes last, after Val (it is appended as idText).
   */
  private dbGet(s: Session, m: Message): void {
    const family = m.get('Family');
    const key = m.get('Key');
    if (!family) return this.sendError(s, m, 'No family specified.');
    if (!key) return this.sendError(s, m, 'No key specified.');
    const value = this.astdb.get(family, key);
    if (value === undefined) return this.sendError(s, m, 'Database entry not found');
    this.listAck(s, m, 'Result will follow');
    s.write(`Event: DBGetResponse\r\nFamily: ${family}\r\nKey: ${key}\r\nVal: ${value}\r\n${this.idLine(m)}\r\n`);
    this.listComplete(s, m, 'DBGetComplete', 1);
  }

  /** main/db.c:1060 manager_dbdel (ast_db_del2: a missing key is an error). */
  private dbDel(s: Session, m: Message): void {
    const family = m.get('Family');
    const key = m.get('Key');
    if (!family) return this.sendError(s, m, 'No family specified.');
    if (!key) return this.sendError(s, m, 'No key specified.');
    if (!this.astdb.del2(family, key)) return this.sendError(s, m, 'Database entry could not be deleted');
    this.sendAck(s, m, 'Key deleted successfully');
  }

  /** main/db.c:1085 manager_dbdeltree: every key under /Family[/Key]. */
  private dbDelTree(s: Session, m: Message): void {
    const family = m.get('Family');
    if (!family) return this.sendError(s, m, 'No family specified.');
    const deleted = this.astdb.deltree(family, m.get('Key'));
    if (deleted === 0) return this.sendError(s, m, 'Database entry not found');
    this.sendAck(s, m, 'Key tree deleted successfully');
  }

  // -- ARI /ari/asterisk/config/dynamic/{configClass}/{objectType}/{id} (res/ari/resource_asterisk.c) --

  /** resource_asterisk.c:89 ast_ari_asterisk_get_object(). */
  private ariGetObject(configClass: string, type: string, id: string): AriAnswer {
    const refused = ariTypeCheck(configClass, type);
    if (refused) return refused;
    if (type === 'contact') {
      const contact = this.findContact(id);
      // Of a contact's fields this fake knows only these two.
      if (contact) return ariFields([['uri', contact.uri], ['user_agent', contact.userAgent]]);
    } else if (isModelled(type)) {
      const found = this.sorceryRetrieve(type, id);
      if (found) return ariFields(objectsetOf(found.object));
    }
    return ariError(404, 'Not Found', `Object with id '${id}' not found`); // :120
  }

  /**
   * resource_asterisk.c:128 ast_ari_asterisk_update_object(): an object found by id is updated,
   * else created. The fields are applied first (an unknown one or a bad value: 400), then sorcery
   * asks each wizard to write it: only res_sorcery_astdb can, and only under the live-objects
   * mapping; its update needs the key to be in astdb already (res_sorcery_astdb.c:376), so an
   * object of pjsip.conf alone is refused with 403 (20.16+ could create it instead with sorcery.conf
   * update_or_create_on_update_miss = yes, off by default and not modelled). On success the
   * observers run (sorcery.c:2057 / :2145): a created endpoint or aor is live at once.
   */
  private ariUpdateObject(configClass: string, type: string, id: string, body: unknown): AriAnswer {
    const refused = ariTypeCheck(configClass, type);
    if (refused) return refused;
    if (type === 'contact') return ariError(501, 'Not Implemented', 'FakeAsterisk does not simulate writing contacts through ARI');
    const existing = isModelled(type) ? this.sorceryRetrieve(type, id) : undefined;
    const created = !existing;
    const what = created ? 'Creation' : 'Update';
    // :178 ast_json_object_get(args->fields, "fields"): NULL without a JSON object body holding it.
    const hasFields = typeof body === 'object' && body !== null && !Array.isArray(body) && Object.prototype.hasOwnProperty.call(body, 'fields');
    if (!hasFields && !created) return ariError(400, 'Bad request', `Fields must be provided to update object '${id}'`); // :183
    const update: Array<[string, string]> = [];
    const fields: unknown = hasFields ? (body as { fields: unknown }).fields : [];
    for (const field of Array.isArray(fields) ? fields : []) { // ast_json_array_size() of a non-array is 0
      const attribute: unknown = (field as { attribute?: unknown } | null)?.attribute;
      const value: unknown = (field as { value?: unknown } | null)?.value;
      // A missing or non-string attribute or value reaches ast_variable_new() as NULL (:197), which
      // the real Asterisk dereferences. Refused here as a validation failure instead.
      if (typeof attribute !== 'string' || typeof value !== 'string') {
        return ariError(400, 'Bad request', `${what} of object '${id}' failed field value validation`);
      }
      update.push([attribute, value]);
    }
    // No option tables here for the other res_pjsip types (identify, registration, ...): their
    // fields are not checked, and only pjsip.conf could hold them, which nobody can write to.
    if (!isModelled(type)) return ariError(403, 'Forbidden', `Cannot create sorcery objects of type '${type}'`);
    const layer = isLive(type) ? this.liveLayer : null;
    // The object found, copied (:168): astdb's as stored there, pjsip.conf's as this fake rebuilt it.
    const base = !existing ? [] : existing.from === 'astdb' && layer && isLive(type) ? layer.storedFields(type, id) : fieldsOf(existing.object);
    const object = buildSorceryObject(this.pjsip, type, id, [...base, ...update]);
    if (!object) return ariError(400, 'Bad request', `${what} of object '${id}' failed field value validation`); // :213-217
    const family = `${LIVE_OBJECTS_FAMILY}/${type}`;
    const cannot = ariError(403, 'Forbidden', `Cannot ${created ? 'create' : 'update'} sorcery objects of type '${type}'`); // :229, :237
    if (!layer || (!created && this.astdb.get(family, id) === undefined)) return cannot;
    const before = this.reachability();
    if (!this.astdb.put(family, id, JSON.stringify(storedObjectset(base, update, object)))) return cannot;
    this.broadcastChanges(this.reachabilityChanges(before));
    return ariFields(objectsetOf(object)); // :243 return_sorcery_object(): every field, defaults included
  }

  /**
   * resource_asterisk.c:247 ast_ari_asterisk_delete_object(): only res_sorcery_astdb deletes, and
   * only a key astdb has (res_sorcery_astdb.c:392), so an object of pjsip.conf alone is refused.
   * The observers run: deleting an aor deletes its registered contacts (location.c:81
   * aor_deleted_observer); deleting a contact is an unregistration without a REGISTER.
   */
  private ariDeleteObject(configClass: string, type: string, id: string): AriAnswer {
    const refused = ariTypeCheck(configClass, type);
    if (refused) return refused;
    const notFound = ariError(404, 'Not Found', `Object with id '${id}' not found`); // :277
    if (type === 'contact') {
      const contact = this.findContact(id);
      if (!contact) return notFound;
      this.deleteContacts(contact.aor, [contact.uri]);
      return { status: 204, text: 'No Content' };
    }
    const existing = isModelled(type) ? this.sorceryRetrieve(type, id) : undefined;
    if (!existing) return notFound;
    const family = `${LIVE_OBJECTS_FAMILY}/${type}`;
    if (!isLive(type) || !this.liveLayer || this.astdb.get(family, id) === undefined) {
      return ariError(403, 'Forbidden', `Could not delete object with id '${id}'`); // :285
    }
    if (type === 'aor') {
      this.deleteContacts(id, null, () => this.astdb.del(family, id));
    } else {
      const before = this.reachability();
      this.astdb.del(family, id);
      this.broadcastChanges(this.reachabilityChanges(before));
    }
    return { status: 204, text: 'No Content' }; // :290
  }

  /** A registered contact by its sorcery id `<aor>;@<md5 of the URI>`. */
  private findContact(id: string): { aor: string; uri: string; userAgent: string } | undefined {
    const at = id.indexOf(';@');
    if (at < 0) return undefined;
    const aor = id.slice(0, at);
    return this.pjsip.contacts.get(aor)?.find((c) => md5(c.uri) === id.slice(at + 2));
  }

  /**
   * Contacts deleted through sorcery (not by a REGISTER): these URIs of the aor, or all of them
   * (uris null) after `alsoDelete` (the aor itself) went. Events as for an expiry: PeerStatus for
   * endpoints no longer reachable, then ContactStatus Removed.
   */
  private deleteContacts(aor: string, uris: string[] | null, alsoDelete?: () => void): void {
    const before = this.reachability();
    const endpoints = this.pjsip.endpointsOfAor(aor);
    const list = this.pjsip.contacts.get(aor) ?? [];
    const gone = list.filter((c) => uris === null || uris.includes(c.uri));
    const kept = list.filter((c) => !gone.includes(c));
    if (kept.length) this.pjsip.contacts.set(aor, kept);
    else this.pjsip.contacts.delete(aor);
    alsoDelete?.();
    // res_pjsip/pjsip_options.c:1027, the contact observer's verb line.
    for (const c of gone) this.addLog('VERBOSE', 'res_pjsip/pjsip_options.c', `Contact ${aor}/${c.uri} has been deleted`);
    this.broadcastChanges(this.reachabilityChanges(before));
    for (const c of gone) {
      for (const ep of endpoints) {
        this.broadcast('ContactStatus', [['URI', c.uri], ['ContactStatus', 'Removed'], ['AOR', aor], ['EndpointName', ep], ['RoundtripUsec', '0']]);
      }
    }
  }

  private listCommands(s: Session, m: Message): void {
    const lines = Object.entries(ACTION_CLASSES)
      .filter(([, classes]) => classes.length === 0 || mayWrite(s, classes))
      .map(([action, classes]) => `${ACTION_NAMES[action] ?? action}: ${ACTION_NAMES[action] ?? action} (Priv: ${classes.length ? [...classes, 'all'].join(',') : '<none>'})\r\n`);
    s.write(`Response: Success\r\n${this.idLine(m)}${lines.join('')}\r\n`);
  }

  private logoff(s: Session, m: Message): void {
    s.write(`Response: Goodbye\r\n${this.idLine(m)}Message: Thanks for all the fish.\r\n\r\n`);
    if (s.user) this.addLog('VERBOSE', 'manager.c', `Manager '${s.user}' logged off from 127.0.0.1`);
    s.end();
  }

  private ping(s: Session, m: Message): void {
    const now = Date.now();
    const ts = `${Math.floor(now / 1000)}.${String((now % 1000) * 1000).padStart(6, '0')}`;
    this.sendFields(s, m, [['Ping', 'Pong'], ['Timestamp', ts]]);
  }

  private eventsAction(s: Session, m: Message): void {
    const mask = m.get('EventMask');
    s.events = !/^(off|no|false|0)$/i.test(mask.trim());
    this.sendFields(s, m, [['Events', s.events ? 'On' : 'Off']]);
  }

  private coreSettings(s: Session, m: Message): void {
    // Field order and values from m_*.txt (action a4).
    this.sendFields(s, m, [
      ['AMIversion', this.amiVersion()],
      ['AsteriskVersion', this.version],
      ['SystemName', ''],
      ['CoreMaxCalls', '0'],
      ['CoreMaxLoadAvg', '0.000000'],
      ['CoreRunUser', this.runUser],
      ['CoreRunGroup', this.runGroup],
      ['CoreMaxFilehandles', '0'],
      ['CoreRealTimeEnabled', 'No'],
      ['CoreCDRenabled', 'No'],
      ['CoreHTTPenabled', 'No'],
      ['SoundsSearchCustomDir', 'No'],
    ]);
  }

  private coreStatus(s: Session, m: Message): void {
    // c_basic.txt action a5.
    const [sd, st] = dateTime(this.startedAt);
    const [rd, rt] = dateTime(this.lastReloadAt);
    this.sendFields(s, m, [
      ['CoreStartupDate', sd], ['CoreStartupTime', st], ['CoreReloadDate', rd], ['CoreReloadTime', rt],
      ['CoreCurrentCalls', '0'], ['CoreProcessedCalls', '0'],
    ]);
  }

  private async reloadAction(s: Session, m: Message): Promise<void> {
    const module = m.get('Module');
    const name = module || null;
    this.countReload(name);
    const { status, changes } = await this.moduleReload(name);
    if (s.closed) {
      this.broadcastChanges(changes);
      return;
    }
    switch (status) {
      case RELOAD.NOT_FOUND: this.sendError(s, m, 'No such module'); break;
      case RELOAD.IN_PROGRESS: this.sendError(s, m, 'A reload is in progress'); break;
      case RELOAD.ERROR: this.sendError(s, m, 'An unknown error occurred'); break;
      default: this.sendAck(s, m, 'Module Reloaded'); // QUEUED is answered as success too
    }
    this.broadcastChanges(changes);
    this.broadcast('Reload', [['Module', module || 'All'], ['Status', String(status)]]);
  }

  private countReload(name: string | null): void {
    const key = name === null ? 'all' : normalizeModule(name);
    this.reloadCounts.set(key, (this.reloadCounts.get(key) ?? 0) + 1);
  }

  /** loader.c ast_module_reload(): not found / queued while booting / lock held / run. */
  private async moduleReload(name: string | null): Promise<{ status: ReloadStatus; changes: ReachabilityChange[] }> {
    if (name !== null && !(normalizeModule(name) in MODULES)) return { status: RELOAD.NOT_FOUND, changes: [] };
    if (this.bootingState) {
      this.queuedReloads.push(name);
      return { status: RELOAD.QUEUED, changes: [] };
    }
    if (this.reloadInProgress) {
      this.addLog('VERBOSE', 'loader.c', "The previous reload command didn't finish yet");
      return { status: RELOAD.IN_PROGRESS, changes: [] };
    }
    const hang = this.hangModule !== null && (name === null || normalizeModule(name) === this.hangModule);
    this.reloadInProgress = true;
    const generation = this.server;
    try {
      if (hang) await new Promise<void>((resolve) => this.hung.push(resolve));
      // A restart while hung abandons the reload.
      if (generation !== this.server) return { status: RELOAD.ERROR, changes: [] };
      const changes = this.doReload(name);
      // loader.c: a reload of everything succeeds once any module did; only a named one fails.
      return { status: this.reloadFailed && name !== null ? RELOAD.ERROR : RELOAD.SUCCESS, changes };
    } finally {
      if (generation === this.server) this.reloadInProgress = false;
    }
  }

  /**
   * A res_pjsip reload. Under the live-objects mapping only pjsip.conf's objects are replaced and
   * astdb's keep winning; what changed is judged on the layered view. The module's own verdicts,
   * made on pjsip.conf alone (an endpoint gone that astdb still provides, the contacts of an aor
   * the file dropped but astdb still has), are kept out of the log and undone.
   */
  private reloadPjsip(): ReachabilityChange[] {
    const layer = this.liveLayer;
    if (!layer) return this.pjsip.reload();
    const before = this.reachability();
    const contacts = new Map(this.pjsip.contacts);
    const kept = new Set<string>();
    for (const [aor, list] of contacts) {
      if (layer.fromAstdb('aor', aor)) for (const c of list) kept.add(`Contact ${aor}/${c.uri} has been deleted`);
    }
    this.pjsipLogFilter = (source, message) =>
      (source === 'res_pjsip/pjsip_configuration.c' && /^Endpoint .* is now (Reachable|Unreachable)$/.test(message)) ||
      (source === 'res_pjsip/pjsip_options.c' && kept.has(message));
    try {
      layer.fileLoad(() => this.pjsip.reload());
    } finally {
      this.pjsipLogFilter = null;
    }
    for (const [aor, list] of contacts) {
      if (!this.pjsip.contacts.has(aor) && layer.fromAstdb('aor', aor)) this.pjsip.contacts.set(aor, list);
    }
    return this.reachabilityChanges(before);
  }

  /** Which endpoints are reachable (a contact on one of their aors), on the view Asterisk has. */
  private reachability(): Map<string, boolean> {
    const r = new Map<string, boolean>();
    for (const id of this.pjsip.endpoints.keys()) r.set(id, this.pjsip.deviceState(id) === 'Not in use');
    return r;
  }

  /** As pjsip.ts reachabilityChanges(): what changed since `before`, logged like pjsip_configuration.c. */
  private reachabilityChanges(before: Map<string, boolean>): ReachabilityChange[] {
    const after = this.reachability();
    const changes: ReachabilityChange[] = [];
    for (const id of [...new Set([...before.keys(), ...after.keys()])].sort()) {
      const now = after.get(id) ?? false;
      if ((before.get(id) ?? false) === now) continue;
      const status = now ? 'Reachable' : 'Unreachable';
      this.addLog('VERBOSE', 'res_pjsip/pjsip_configuration.c', `Endpoint ${id} is now ${status}`);
      changes.push({ endpoint: id, status });
    }
    return changes;
  }

  /** ast_sorcery_retrieve_by_id() for the types this fake has objects of; `from` = the wizard that had it. */
  private sorceryRetrieve(type: ModelledType, id: string): { object: PjsipObject; from: 'astdb' | 'config' } | undefined {
    if (type !== 'transport' && this.liveLayer) return this.liveLayer.retrieve(type, id);
    const map = { endpoint: this.pjsip.endpoints, auth: this.pjsip.auths, aor: this.pjsip.aors, transport: this.pjsip.transports }[type];
    const object = map.get(id);
    return object ? { object, from: 'config' } : undefined;
  }

  /** What PJSIPShowEndpoints / PJSIPShowAors list (see LiveObjectLayer.listing). */
  private listing(type: 'endpoint' | 'aor'): PjsipObject[] {
    if (this.liveLayer) return this.liveLayer.listing(type);
    return [...(type === 'endpoint' ? this.pjsip.endpoints : this.pjsip.aors).values()].sort(byId);
  }

  private doReload(name: string | null): ReachabilityChange[] {
    const modules = name === null ? Object.keys(MODULES) : [normalizeModule(name)];
    let changes: ReachabilityChange[] = [];
    this.reloadFailed = false;
    for (const mod of modules) {
      const desc = MODULES[mod] ?? mod;
      this.addLog('VERBOSE', 'loader.c', `Reloading module '${mod}.so' (${desc})`);
      if (mod === 'res_pjsip') changes = changes.concat(this.reloadPjsip());
      else if (mod === 'res_rtp_asterisk') this.rtp.reload();
      else if (mod === 'pbx_config') this.dialplan.reload();
      else if (mod === 'app_voicemail') this.voicemail.reload();
      // app_confbridge's reload answers an error when it refuses the file (conf_reload_config).
      else if (mod === 'app_confbridge' && !this.confbridge.reload()) this.reloadFailed = true;
    }
    this.lastReloadAt = new Date();
    return changes;
  }

  private async command(s: Session, m: Message): Promise<void> {
    const cmd = m.get('Command').trim();
    if (!cmd) return this.sendError(s, m, 'No command provided');
    const words = cmd.split(/\s+/);
    const is = (...prefix: string[]) => prefix.every((w, i) => words[i]?.toLowerCase() === w);
    let ok = true;
    let output: string[] = [];
    const after: Array<() => void> = [];

    if (is('pjsip', 'show', 'endpoints') && words.length === 3) output = this.pjsip.cliShowEndpoints();
    else if (is('pjsip', 'show', 'transport') && words.length === 4) output = this.pjsip.cliShowTransport(words[3] ?? '');
    else if (is('pjsip', 'show', 'aor') && words.length === 4) output = this.cliShowAor(words[3] ?? '');
    else if (is('rtp', 'show', 'settings') && words.length === 3) output = this.rtp.cliShowSettings();
    else if (is('manager', 'show', 'user') && words.length === 4) output = this.cliShowManagerUser(words[3] ?? '');
    else if (is('dialplan', 'show') && words.length <= 3) [ok, output] = this.dialplan.cliShow(words[2]);
    else if (is('voicemail', 'show', 'users')) {
      output = this.voicemail.cliShowUsers(words[3]?.toLowerCase() === 'for' ? words[4] : undefined);
    } else if (is('confbridge', 'show', 'profile', 'bridge') && words.length <= 5) {
      // conf_config_parser.c: a missing name is CLI_SHOWUSAGE (an error), an unknown one is not.
      if (words.length === 5) output = this.confbridge.cliShowBridge(words[4]!);
      else [ok, output] = [false, ['Usage: confbridge show profile bridge <profile name>']];
    } else if (is('confbridge', 'show', 'profile', 'user') && words.length <= 5) {
      if (words.length === 5) output = this.confbridge.cliShowUser(words[4]!);
      else [ok, output] = [false, ['Usage: confbridge show profile user [<profile name>]']];
    } else if (is('confbridge', 'show', 'profile', 'bridges') && words.length === 4) {
      output = this.confbridge.cliShowBridges();
    } else if (is('confbridge', 'show', 'profile', 'users') && words.length === 4) {
      output = this.confbridge.cliShowUsers();
    } else if (is('core', 'show', 'channels', 'count') && words.length === 4) {
      // cli.c handle_chanlist "count" (not recorded): channels, calls, calls processed.
      const calls = this.activeCallCount;
      output = [`${calls * 2} active channel${calls * 2 === 1 ? '' : 's'}`, `${calls} active call${calls === 1 ? '' : 's'}`, `${this.callsProcessed} call${this.callsProcessed === 1 ? '' : 's'} processed`];
    } else if (is('core', 'restart') && ['now', 'gracefully', 'when'].includes(words[2]?.toLowerCase() ?? '')) {
      // asterisk.c: "when convenient" and "gracefully" wait for calls to end; the fake restarts
      // once there are none. The restart drops every AMI connection, as the real one does.
      this.restartRequests++;
      after.push(() => this.restartWhenIdle());
    } else if (is('core', 'show', 'version') && words.length === 3) {
      output = [`Asterisk ${this.version} built by pbx-agent-tests @ localhost on a x86_64 running Linux`];
    } else if ((is('module', 'reload') && words.length >= 3) || (is('core', 'reload') && words.length === 2)) {
      const targets: Array<string | null> = is('core', 'reload') ? [null] : words.slice(2);
      for (const target of targets) {
        this.countReload(target);
        const { status, changes } = await this.moduleReload(target);
        const label = target ?? 'All';
        if (target !== null) {
          output.push({
            [RELOAD.SUCCESS]: `Module '${label}' reloaded successfully.`,
            [RELOAD.QUEUED]: `Module '${label}' queued for reload.`,
            [RELOAD.NOT_FOUND]: `No such module '${label}'`,
            [RELOAD.ERROR]: `The module '${label}' reported a reload failure.`,
            [RELOAD.IN_PROGRESS]: 'A module reload request is already in progress; please be patient',
          }[status]);
        }
        after.push(() => {
          this.broadcastChanges(changes);
          this.broadcast('Reload', [['Module', label], ['Status', String(status)]]);
        });
      }
    } else if (KNOWN_COMMANDS.some((c) => c.length === words.length && c.every((w, i) => w === words[i]?.toLowerCase()))) {
      ok = false;
      output = [`FakeAsterisk does not simulate '${cmd}'`];
    } else {
      ok = false;
      output = [`No such command '${cmd}' (type 'core show help ${findBest(words)}' for other possible commands)`];
    }
    if (s.closed) return;
    s.write(`Response: ${ok ? 'Success' : 'Error'}\r\n${this.idLine(m)}Message: Command output follows\r\n` +
      output.map((l) => `Output: ${l}\r\n`).join('') + '\r\n');
    for (const f of after) f();
  }

  /**
   * `pjsip show aor <id>`: res_pjsip/pjsip_cli.c:120 ast_sip_cli_traverse_objects() with the aor
   * and contact formatters of res_pjsip/location.c:1094-1230. Widths from res_pjsip_cli.h:
   * CLI_INDENT_TO_SPACES(level) = level * 2 + 1 + 8, CLI_LAST_TABSTOP = 62, CLI_MAX_WIDTH = 90.
   */
  private cliShowAor(id: string): string[] {
    const aor = this.sorceryRetrieve('aor', id)?.object;
    if (!aor) return [`Unable to find object ${id}.`, '']; // pjsip_cli.c:228
    const out = [
      '',
      `      Aor:  <Aor${'.'.repeat(62 - 9 - 7)}>  <MaxContact>`,
      `    Contact:  <Aor/ContactUri${'.'.repeat(62 - 11 - 23)}> <Hash....> <Status> <RTT(ms)..>`,
      '='.repeat(90),
      '',
      `      Aor:  ${column(id, 62 - 9 - 12)} ${(valueOf(aor, 'max_contacts') ?? '0').padStart(12)}`,
    ];
    // Permanent contacts (contact=) and registered ones; none is qualified here: NonQual, RTT nan.
    const uris = [...(aor.lists.get('contact') ?? []), ...(this.pjsip.contacts.get(id) ?? []).map((c) => c.uri)];
    for (const uri of uris) {
      out.push(`    Contact:  ${id}/${column(uri, 62 - 11 - 9 - id.length + 1)} ${column(md5(uri), 10)} ${column('NonQual', 7)} ${'nan'.padStart(11)}`);
    }
    // pjsip_cli.c:36 ast_sip_cli_print_sorcery_objectset(): sorted by name, columns at least 13 and 14 wide.
    const set = objectsetOf(aor).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const nameWidth = Math.max(13, ...set.map(([n]) => n.length));
    const valueWidth = Math.max(14, ...set.map(([, v]) => v.length));
    out.push('', '', ` ${column('ParameterName', nameWidth)} : ParameterValue`, ` ${'='.repeat(nameWidth + valueWidth + 3)}`);
    for (const [name, value] of set) out.push(` ${column(name, nameWidth)} : ${value}`);
    out.push('');
    return out;
  }

  /** manager.c handle_showmanager (user_authority_to_str: "all" expands to every class, then "all"). */
  private cliShowManagerUser(name: string): string[] {
    if (!Object.prototype.hasOwnProperty.call(this.users, name)) return [`There is no manager called ${name}`];
    const perms = this.permissions[name] ?? { read: ['all'], write: ['all'] };
    const show = (classes: string[]) => (classes.includes('all') ? [...ALL_CLASSES, 'all'] : ALL_CLASSES.filter((c) => classes.includes(c))).join(',') || '<none>';
    return [
      '',
      `          username: ${name}`,
      '            secret: <Set>',
      '               ACL: no',
      `         read perm: ${show(perms.read)}`,
      `        write perm: ${show(perms.write)}`,
      '   displayconnects: yes',
      'allowmultiplelogin: yes',
    ];
  }

  /** manager.c action_getconfig(): Asterisk's parser run on the file, uncached. */
  private getConfig(s: Session, m: Message): void {
    const fn = m.get('Filename').trim();
    if (!fn) return this.sendError(s, m, 'Filename not specified');
    const abs = path.isAbsolute(fn) ? fn : path.join(this.configDir, fn);
    let real: string;
    try {
      real = realpathSync(abs);
    } catch {
      return this.sendError(s, m, 'Config file not found'); // g_getconfig_bad.txt, action a3
    }
    if (!real.startsWith(this.configDir + path.sep)) return this.sendError(s, m, 'File requires escalated priveledges');
    const parser = new AsteriskConfigParser({
      configDir: this.configDir,
      log: (level, source, message) => this.addLog(level, source, message),
    });
    const result = parser.load(fn);
    if (result.status === 'missing') return this.sendError(s, m, 'Config file not found');
    if (result.status === 'invalid') return this.sendError(s, m, 'Config file has invalid format');
    const category = m.get('Category');
    const filter = m.get('Filter');
    const includeTemplates = /TEMPLATES=include/i.test(filter);
    let text = `Response: Success\r\n${this.idLine(m)}`;
    let n = 0;
    for (const cat of result.categories) {
      if (cat.template && !includeTemplates) continue;
      if (category && cat.name.toLowerCase() !== category.toLowerCase()) continue;
      const c = String(n).padStart(6, '0');
      text += `Category-${c}: ${cat.name}\r\n`;
      if (cat.template) text += `IsTemplate-${c}: 1\r\n`;
      if (cat.templates.length) text += `Templates-${c}: ${cat.templates.join(',')}\r\n`;
      cat.vars.forEach((v, i) => {
        text += `Line-${c}-${String(i).padStart(6, '0')}: ${v.name}=${v.value}\r\n`;
      });
      n++;
    }
    if (category && n === 0) text += 'No categories found\r\n';
    s.write(text + '\r\n');
  }

  private showEndpoints(s: Session, m: Message): void {
    const endpoints = this.listing('endpoint');
    // pjsip_configuration.c ami_show_endpoints(): the message really ends in a bare LF.
    if (endpoints.length === 0) return this.sendError(s, m, 'No endpoints found\n');
    this.listAck(s, m, 'A listing of Endpoints follows, presented as EndpointList events');
    const items = endpoints.map((ep) => ({ event: 'EndpointList', fields: this.pjsip.endpointListItem(ep) }));
    this.listItems(s, m, items);
    this.listComplete(s, m, 'EndpointListComplete', items.length);
  }

  private showEndpoint(s: Session, m: Message): void {
    let name = m.get('Endpoint');
    if (!name) return this.sendError(s, m, 'PJSIPShowEndpoint requires an endpoint name\n');
    if (name.toLowerCase().startsWith('pjsip/')) name = name.slice(6);
    const ep = this.sorceryRetrieve('endpoint', name)?.object;
    // README: the raw bytes are `Message: Unable to retrieve endpoint 9999\n\r\n\r\n`.
    if (!ep) return this.sendError(s, m, `Unable to retrieve endpoint ${name}\n`);
    this.listAck(s, m, 'Following are Events for each object associated with the Endpoint');
    const items = this.pjsip.endpointDetailEvents(ep);
    this.listItems(s, m, items);
    this.listComplete(s, m, 'EndpointDetailComplete', items.length);
  }

  private showAors(s: Session, m: Message): void {
    const aors = this.listing('aor');
    if (aors.length === 0) return this.sendError(s, m, 'No AORs found\n');
    this.listAck(s, m, 'A listing of AORs follows, presented as AorList events');
    const items = aors.map((aor) => ({ event: 'AorList', fields: this.pjsip.objectFields(aor) }));
    this.listItems(s, m, items);
    this.listComplete(s, m, 'AorListComplete', items.length);
  }

  /** include/asterisk/manager.h AMI_VERSION: 9.0.0 in 20.x, 10.0.0 in 21.x, 11.0.0 in 22.x. */
  private amiVersion(): string {
    const major = Number(this.version.split('.')[0]);
    return major >= 20 ? `${major - 11}.0.0` : '9.0.0';
  }

  private uptime(): number {
    return Math.floor((Date.now() - this.startedAt.getTime()) / 1000);
  }

  private sinceReload(): number {
    return Math.floor((Date.now() - this.lastReloadAt.getTime()) / 1000);
  }
}

function formatEvent(event: string, fields: Fields): string {
  return `Event: ${event}\r\nPrivilege: system,all\r\n${fields.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;
}

/** cli.c find_best(): the words of the input up to the first one no command continues with. */
function findBest(words: string[]): string {
  const out: string[] = [];
  for (let x = 0; x < words.length; x++) {
    out.push(words[x] ?? '');
    if (x === 0) continue; // a one-word command ("!") always half-matches the first word
    const prefix = words.slice(0, x).map((w) => w.toLowerCase());
    const found = KNOWN_COMMANDS.some((c) => c.length === x + 1 && prefix.every((w, i) => c[i] === w));
    if (!found) break;
  }
  return out.join(' ');
}

function dateTime(d: Date): [string, string] {
  const p = (n: number) => String(n).padStart(2, '0');
  return [`${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`, `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`];
}

function formatLogTime(d: Date): string {
  const [date, time] = dateTime(d);
  return `${date} ${time}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** resource_asterisk.c:98-113: ast_sorcery_retrieve_by_module_name(), then ast_sorcery_get_object_type(). */
function ariTypeCheck(configClass: string, type: string): AriAnswer | null {
  if (configClass !== 'res_pjsip') return ariError(404, 'Not Found', `configClass '${configClass}' not found`);
  if (!RES_PJSIP_TYPES.includes(type)) return ariError(404, 'Not Found', `objectType '${type}' not found`);
  return null;
}

/** resource_asterisk.c:41 return_sorcery_object(): 200 with the fields as [{attribute, value}]. */
function ariFields(fields: Array<[string, string]>): AriAnswer {
  return { status: 200, text: 'OK', body: fields.map(([attribute, value]) => ({ attribute, value })) };
}
