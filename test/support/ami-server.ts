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
 * Knobs for tests: hangReloads(), closeAfterNextAction(), failNextAction(), booting/finishBooting(),
 * emitEvent(), injectEventsIntoNextList(), registerContact()/unregisterContact(), restart().
 * Observations: actionCount(), reloadCount(), configLoadCount(), liveEndpoints(), liveState(),
 * logEntries()/logText().
 */
import net from 'node:net';
import { AsteriskConfigParser } from './fake-asterisk/config-parser.js';
import type { LogLevel } from './fake-asterisk/config-parser.js';
import { defaultValues, PjsipModule, type PjsipObject } from './fake-asterisk/pjsip.js';
import type { ReachabilityChange } from './fake-asterisk/pjsip.js';
import { DialplanModule, RtpModule, VoicemailModule } from './fake-asterisk/modules.js';
import { ConfbridgeModule } from './fake-asterisk/confbridge.js';
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
  buffer = '';
  lines: string[] = [];
  authenticated = false;
  user = '';
  events = true;
  readClasses: ReadonlySet<string> = new Set(['all']);
  writeClasses: ReadonlySet<string> = new Set(['all']);
  queue: Message[] = [];
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
};
const ACTION_NAMES: Record<string, string> = {
  ping: 'Ping', events: 'Events', logoff: 'Logoff', login: 'Login', listcommands: 'ListCommands', challenge: 'Challenge',
  command: 'Command', reload: 'Reload', getconfig: 'GetConfig', coresettings: 'CoreSettings', corestatus: 'CoreStatus',
  pjsipshowendpoints: 'PJSIPShowEndpoints', pjsipshowendpoint: 'PJSIPShowEndpoint', pjsipshowaors: 'PJSIPShowAors',
  dialplanextensionadd: 'DialplanExtensionAdd', dialplanextensionremove: 'DialplanExtensionRemove',
};
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
  }

  // ------------------------------------------------------------------------------------------
  // Lifecycle
  // ------------------------------------------------------------------------------------------

  /** Load every module's config like a fresh Asterisk, then listen on 127.0.0.1 (port 0 = any). */
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
  }

  /**
   * A restart: every connection dropped, the port closed and reopened, all config read again
   * with startup semantics (a duplicate endpoint at startup means zero endpoints, k_startup_dup.txt).
   * Registered contacts survive (they are in astdb).
   */
  async restart(options: { booting?: boolean } = {}): Promise<void> {
    await this.stop();
    this.bootingState = options.booting ?? false;
    await this.start(this.listenPort);
  }

  private bootModules(): void {
    const logFn = (level: LogLevel, source: string, message: string) => this.addLog(level, source, message);
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

  // ------------------------------------------------------------------------------------------
  // Observations
  // ------------------------------------------------------------------------------------------

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
    socket.on('data', (chunk) => this.onData(session, chunk.toString('utf8')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      session.closed = true;
      this.sessions.delete(session);
    });
    session.write(`Asterisk Call Manager/${this.amiVersion()}\r\n`);
  }

  /** get_input(): lines end in \r\n or \n; an empty line ends the message. */
  private onData(s: Session, text: string): void {
    s.buffer += text;
    let nl: number;
    while ((nl = s.buffer.indexOf('\n')) >= 0) {
      const line = s.buffer.slice(0, nl).replace(/\r$/, '');
      s.buffer = s.buffer.slice(nl + 1);
      if (line === '') {
        s.queue.push(new Message(s.lines));
        s.lines = [];
      } else {
        s.lines.push(line);
      }
    }
    void this.pump(s);
  }

  /** One action at a time per session, in order (Asterisk's session thread). */
  private async pump(s: Session): Promise<void> {
    if (s.busy) return;
    s.busy = true;
    try {
      let m: Message | undefined;
      while (!s.closed && (m = s.queue.shift())) await this.process(s, m);
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

  private doReload(name: string | null): ReachabilityChange[] {
    const modules = name === null ? Object.keys(MODULES) : [normalizeModule(name)];
    let changes: ReachabilityChange[] = [];
    this.reloadFailed = false;
    for (const mod of modules) {
      const desc = MODULES[mod] ?? mod;
      this.addLog('VERBOSE', 'loader.c', `Reloading module '${mod}.so' (${desc})`);
      if (mod === 'res_pjsip') changes = changes.concat(this.pjsip.reload());
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
    const ids = this.liveEndpoints();
    // pjsip_configuration.c ami_show_endpoints(): the message really ends in a bare LF.
    if (ids.length === 0) return this.sendError(s, m, 'No endpoints found\n');
    this.listAck(s, m, 'A listing of Endpoints follows, presented as EndpointList events');
    const items = ids.map((id) => ({ event: 'EndpointList', fields: this.pjsip.endpointListItem(this.pjsip.endpoints.get(id)!) }));
    this.listItems(s, m, items);
    this.listComplete(s, m, 'EndpointListComplete', items.length);
  }

  private showEndpoint(s: Session, m: Message): void {
    let name = m.get('Endpoint');
    if (!name) return this.sendError(s, m, 'PJSIPShowEndpoint requires an endpoint name\n');
    if (name.toLowerCase().startsWith('pjsip/')) name = name.slice(6);
    const ep = this.pjsip.endpoints.get(name);
    // README: the raw bytes are `Message: Unable to retrieve endpoint 9999\n\r\n\r\n`.
    if (!ep) return this.sendError(s, m, `Unable to retrieve endpoint ${name}\n`);
    this.listAck(s, m, 'Following are Events for each object associated with the Endpoint');
    const items = this.pjsip.endpointDetailEvents(ep);
    this.listItems(s, m, items);
    this.listComplete(s, m, 'EndpointDetailComplete', items.length);
  }

  private showAors(s: Session, m: Message): void {
    const ids = [...this.pjsip.aors.keys()].sort();
    if (ids.length === 0) return this.sendError(s, m, 'No AORs found\n');
    this.listAck(s, m, 'A listing of AORs follows, presented as AorList events');
    const items = ids.map((id) => ({ event: 'AorList', fields: this.pjsip.objectFields(this.pjsip.aors.get(id)!) }));
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
