/**
 * The AMI adapter: the only module that touches `asterisk-manager` (0.2.0).
 *
 * What the library does not do, and what this file adds (read node_modules/asterisk-manager/lib/ami.js):
 * - Its action callback fires on the first Response only. List actions (PJSIPShowEndpoints, ...)
 *   answer with a Response and then events carrying the same ActionID up to `...Complete`; those
 *   events only reach the generic 'managerevent' listener, so listAction() collects them by
 *   ActionID here, next to unrelated events (PeerStatus, ContactStatus) that can arrive in between.
 * - No timeout anywhere (connect, login, actions): every call here has one.
 * - Keys come back lowercased ("directmedia"). Values are intact; header names are restored from a
 *   table of the names Asterisk 20 sends (all of those in the recorded transcripts, plus
 *   Category-NNNNNN / Line-NNNNNN-NNNNNN). A name not in the table stays lowercase; use header()
 *   for case-insensitive access in any case.
 * - A failed login is silent unless a callback is passed, and Asterisk then closes the socket:
 *   connect() turns it into AmiError 'ami.auth_failed'.
 * - Reconnect (keepConnected) is a fixed 10 s + 10 s steps up to 60 s, logs with console.log, and
 *   keeps the parser's half-read lines and the "authenticated" flag across connections, so a
 *   message cut by the drop corrupts the first one of the next connection. This adapter never
 *   reuses a library instance: every connection gets a fresh one, with our own capped backoff.
 * - Its login sends `Event: on|off`, but Asterisk reads `Events:`: the flag is ignored, and
 *   what events arrive is decided by the AMI user's read permissions in manager.conf.
 * - It writes field values verbatim: a value containing CR/LF would inject headers. Refused here.
 * - disconnect() only half-closes (socket.end()); against a hung Asterisk that never closes its
 *   side the socket would linger forever. The library never exposes its socket, so connect()
 *   captures it (net.createConnection is wrapped for the duration of the synchronous
 *   library call) and the adapter destroy()s it when it abandons a connection.
 *
 * Secrets: AuthDetail `Password`, `Md5Cred`, ... and password lines of GetConfig / `pjsip show`
 * output never leave this file in clear text. They are replaced by a keyed fingerprint
 * (`redacted:...`, HMAC with a per-client random key); compare with secretFingerprint(desired)
 * to verify a live password without holding or logging it.
 *
 * Actions issued while the connection is down WAIT for the reconnect, within their own timeout,
 * then fail with 'ami.disconnected'. When the connection drops before an action is answered, a
 * read-only action (Ping, PJSIPShow*, GetConfig, CoreSettings, `... show|list ...` commands) is
 * sent once more on the next connection; any other action (Reload) fails with 'ami.disconnected'
 * at once: it may or may not have run, so re-read live state rather than assume. An action that
 * times out also drops the connection: Asterisk runs a session's actions one after another, so
 * everything behind a hung action would hang too.
 */
import { EventEmitter } from 'node:events';
import { createHmac, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import net from 'node:net';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export interface AmiConnectionOptions {
  host: string;
  port: number;
  username: string;
  secret: string;
  /** TCP connect + Login answer. */
  connectTimeoutMs: number;
  /** Default timeout of one action (a whole list for list actions). */
  actionTimeoutMs: number;
  /** Send a Ping this often while connected; a Ping that times out drops the connection. Off when absent or 0. */
  keepaliveMs?: number;
  /** Reconnect backoff after a drop: first delay, doubled each failed attempt up to the max. */
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
}

export type AmiErrorCode =
  | 'ami.unreachable' // no TCP connection (refused, unreachable, connect timeout)
  | 'ami.auth_failed' // Login answered "Authentication failed"
  | 'ami.timeout' // no answer in time (the connection is dropped and re-established)
  | 'ami.disconnected' // connection lost while waiting, or not back within the timeout
  | 'ami.closed' // close() was called
  | 'ami.bad_request' // refused before sending (CR/LF in a value, bad field name, Login/Logoff)
  | 'ami.protocol' // an answer that does not look like AMI (e.g. Ping without Pong)
  | 'ami.action_failed' // Response: Error to an action with no more specific code
  | 'ami.no_such_module' // Reload: "No such module"
  | 'ami.reload_in_progress' // Reload: "A reload is in progress" (an earlier reload is hung)
  | 'ami.reload_failed' // Reload: any other error
  | 'ami.permission_denied' // Response: Error "Permission denied": the AMI user lacks the write class
  | 'ami.shutting_down' // Response: Error "Asterisk is shutting down" (manager.c, any action)
  | 'ami.no_such_command' // Command: unknown CLI command
  | 'ami.command_failed' // Command: Response: Error
  | 'ami.invalid_config' // GetConfig: "Config file has invalid format"
  | 'ami.config_not_found'; // GetConfig: "Config file not found"

/** Error answers that say nothing about the request itself: who asks, or when. */
function refusalCode(message: string): AmiErrorCode | undefined {
  if (/^Permission denied/i.test(message)) return 'ami.permission_denied';
  if (/shutting down/i.test(message)) return 'ami.shutting_down';
  return undefined;
}

export class AmiError extends Error {
  readonly code: AmiErrorCode;
  /** The action this error is about (e.g. 'Reload'), when there is one. */
  readonly action: string | undefined;
  /** For reload errors: the module. */
  readonly module: string | undefined;
  /** The AMI answer, when there was one (secrets already redacted). */
  readonly response: AmiResponse | undefined;

  constructor(code: AmiErrorCode, message: string, extra: { action?: string; module?: string; response?: AmiResponse; cause?: unknown } = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'AmiError';
    this.code = code;
    this.action = extra.action;
    this.module = extra.module;
    this.response = extra.response;
  }
}

/** Headers of one AMI message; repeated headers (Output, Contacts, ...) become arrays, in order. */
export type AmiHeaders = Readonly<Record<string, string | readonly string[]>>;

export interface AmiResponse {
  /** 'Success' | 'Error' | 'Goodbye' */
  response: string;
  actionId: string;
  /** The Message header ('' when absent). */
  message: string;
  headers: AmiHeaders;
}

export interface AmiEvent {
  event: string;
  actionId: string | undefined;
  headers: AmiHeaders;
}

export interface AmiListResult {
  response: AmiResponse;
  /** The list items with this action's ActionID, in order, without the `...Complete` event. */
  events: AmiEvent[];
  /** The `...Complete` event (undefined when the answer was an Error or not a list). */
  complete: AmiEvent | undefined;
}

export type AmiFields = Readonly<Record<string, string | number | boolean>>;

export interface EndpointSummary {
  name: string;
  transport: string;
  aors: string[];
  auths: string[];
  outboundAuths: string[];
  /** `aor/uri` of every registered or static contact */
  contacts: string[];
  /** 'Not in use' | 'Unavailable' | 'Invalid' | 'In use' | ... */
  deviceState: string;
  activeChannels: string;
}

export interface EndpointDetails {
  name: string;
  /** EndpointDetail headers: DirectMedia, RtpSymmetric, ForceRport, RewriteContact, Allow, ... */
  endpoint: AmiHeaders;
  /** AuthDetail headers; Password/Md5Cred replaced by fingerprints (see secretFingerprint). */
  auths: AmiHeaders[];
  /** AorDetail headers: MaxContacts, RemoveExisting, ... */
  aors: AmiHeaders[];
  transports: AmiHeaders[];
  /** Any other detail events (IdentifyDetail, ContactStatusDetail, ...) */
  other: AmiEvent[];
}

export interface ConfigCategoryLine {
  name: string;
  value: string;
}

export interface ConfigCategory {
  name: string;
  isTemplate: boolean;
  templates: string[];
  lines: ConfigCategoryLine[];
}

export interface CoreSettings {
  asteriskVersion: string;
  amiVersion: string;
  headers: AmiHeaders;
}

export type AmiState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** Case-insensitive header lookup: the first value. */
export function header(headers: AmiHeaders, name: string): string | undefined {
  const v = lookup(headers, name);
  return Array.isArray(v) ? v[0] : (v as string | undefined);
}

/** Case-insensitive header lookup: every value (Output, Contacts, local_net ...). */
export function headerAll(headers: AmiHeaders, name: string): string[] {
  const v = lookup(headers, name);
  if (v === undefined) return [];
  return Array.isArray(v) ? [...v] : [v as string];
}

function lookup(headers: AmiHeaders, name: string): string | readonly string[] | undefined {
  if (Object.prototype.hasOwnProperty.call(headers, name)) return headers[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return headers[k];
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The library, as much of it as is used (it has no type declarations)
// ---------------------------------------------------------------------------------------------

type RawValue = string | string[] | Record<string, string>;
type RawMessage = Record<string, RawValue>;

interface LibManager {
  connect(port: number, host: string, callback?: (err: null) => void): void;
  login(callback: (err?: RawMessage) => void): void;
  action(action: Record<string, string>, callback: (err: RawMessage | undefined, res: RawMessage) => void): string;
  disconnect(callback?: () => void): void;
  on(event: string, listener: (...args: never[]) => void): unknown;
  once(event: string, listener: (...args: never[]) => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  removeAllListeners(event: string): unknown;
}

type LibFactory = (port?: number, host?: string, username?: string, password?: string, events?: boolean) => LibManager;

const requireCjs = createRequire(import.meta.url);
const createLibManager = requireCjs('asterisk-manager') as LibFactory;

// ---------------------------------------------------------------------------------------------
// Header names (the library lowercases them)
// ---------------------------------------------------------------------------------------------

/** Every header name in the recorded Asterisk 20 transcripts, plus common AMI ones. */
const KNOWN_HEADERS = (
  '100rel AMIversion AOR AcceptMultipleSdpAnswers Accountcode Acl ActionID ActiveChannels AggregateMwi Allow ' +
  'AllowOverlap AllowReload AllowSubscribe AllowTransfer AllowUnauthenticatedOptions AllowWildcardCerts Aor Aors ' +
  'AsteriskVersion AsymmetricRtpCodec AsyncOperations Auth AuthType AuthenticateQualify Auths Bind ' +
  'BindRtpToMediaAddress Bundle CaListFile CaListPath CallGroup CallId Callerid CalleridPrivacy CalleridTag CertFile ' +
  'ChannelType Cipher CodecPrefsIncomingAnswer CodecPrefsIncomingOffer CodecPrefsOutgoingAnswer ' +
  'CodecPrefsOutgoingOffer ConnectedLineMethod ContactAcl ContactStatus Contacts ContactsRegistered Context ' +
  'CoreCDRenabled CoreCurrentCalls CoreHTTPenabled CoreMaxCalls CoreMaxFilehandles CoreMaxLoadAvg ' +
  'CoreProcessedCalls CoreRealTimeEnabled CoreReloadDate CoreReloadTime CoreRunGroup CoreRunUser CoreStartupDate ' +
  'CoreStartupTime Cos CosAudio CosVideo DefaultExpiration DeviceState DeviceStateBusyAt DirectMedia ' +
  'DirectMediaGlareMitigation DirectMediaMethod DisableDirectMediaOnNat Domain DtlsAutoGenerateCert DtlsCaFile ' +
  'DtlsCaPath DtlsCertFile DtlsCipher DtlsFingerprint DtlsPrivateKey DtlsRekey DtlsSetup DtlsVerify DtmfMode ' +
  'Endpoint EndpointName Event EventList Events ExpirationTime ExternalMediaAddress ExternalSignalingAddress ' +
  'ExternalSignalingPort FaxDetect FaxDetectTimeout FollowEarlyMediaFork FollowRedirectMethods ForceAvp ' +
  'ForceRport FromDomain FromUser G726NonStandard GeolocIncomingCallProfile GeolocOutgoingCallProfile IceSupport ' +
  'IdentifyBy Ignore183WithoutSdp InbandProgress IncomingCallOfferPref IncomingMwiMailbox Language LastReload ' +
  'ListItems LocalNet Mailboxes MaxAudioStreams MaxContacts MaxVideoStreams MaximumExpiration Md5Cred ' +
  'MediaAddress MediaEncryption MediaEncryptionOptimistic MediaUseReceivedTransport Message MessageContext Method ' +
  'MinimumExpiration Module MohPassthrough MohSuggest MwiFromUser MwiSubscribeReplacesUnsolicited ' +
  'NamedCallGroup NamedPickupGroup NonceLifetime NotifyEarlyInuseRinging OauthClientid OauthSecret ObjectName ' +
  'ObjectType OneTouchRecording OutboundAuth OutboundAuths OutboundProxy OutgoingCallOfferPref Output ' +
  'OverlapContext Password PasswordDigest Path Peer PeerStatus PickupGroup Ping PreferredCodecOnly Privilege ' +
  'PrivKeyFile Protocol PruneOnBoot Qualify2xxOnly QualifyFrequency QualifyTimeout Realm RecordOffFeature ' +
  'RecordOnFeature RedirectMethod ReferBlindProgress RefreshToken RegServer RemoveExisting RemoveUnavailable ' +
  'RequireClientCert Response RewriteContact RoundtripUsec RpidImmediate RtcpMux RtpEngine RtpIpv6 RtpKeepalive ' +
  'RtpPortEnd RtpPortStart RtpSymmetric RtpTimeout RtpTimeoutHold SdpOwner SdpSession Secret SecurityNegotiation ' +
  'SendAoc SendConnectedLine SendDiversion SendHistoryInfo SendPai SendRpid SetVar SoundsSearchCustomDir ' +
  'SrtpTag32 Status StirShaken StirShakenProfile SubMinExpiry SubscribeContext SupportPath SupportedAlgorithmsUac ' +
  'SupportedAlgorithmsUas SuppressMohOnSendonly SuppressQ850ReasonHeaders SymmetricTransport SystemName ' +
  'T38BindUdptlToMediaAddress T38Udptl T38UdptlEc T38UdptlIpv6 T38UdptlMaxdatagram T38UdptlNat ' +
  'TcpKeepaliveEnable TcpKeepaliveIdleTime TcpKeepaliveIntervalTime TcpKeepaliveProbeCount Tenantid Timers ' +
  'TimersMinSe TimersSessExpires Timestamp ToneZone Tos TosAudio TosVideo TotalContacts Transport ' +
  'TrustConnectedLine TrustIdInbound TrustIdOutbound Uptime Uri UseAvpf UsePtime UserAgent UserEqPhone Username ' +
  'VerifyClient VerifyServer ViaAddr ViaPort VoicemailExtension Webrtc WebsocketWriteTimeout ChanVariable Variable'
).split(' ');

const CANONICAL = new Map(KNOWN_HEADERS.map((h) => [h.toLowerCase(), h]));
/** Same lowercase name, different case per event (j_register_events.txt vs h_after_readd.txt). */
const PER_EVENT: Record<string, Record<string, string>> = {
  contactstatus: { uri: 'URI', aor: 'AOR' },
};

/** Header names whose values are secrets (AuthDetail, TransportDetail, Login). */
const SECRET_HEADERS = new Set(['password', 'secret', 'md5cred', 'passworddigest', 'oauthsecret', 'refreshtoken']);
/** Option names whose values are secrets (GetConfig lines, `pjsip show ...` output). */
const SECRET_OPTIONS = new Set(['password', 'secret', 'md5_cred', 'password_digest', 'oauth_secret', 'refresh_token']);

function canonicalName(lower: string, eventLower: string | undefined): string {
  const special = eventLower ? PER_EVENT[eventLower]?.[lower] : undefined;
  if (special) return special;
  const known = CANONICAL.get(lower);
  if (known) return known;
  const m = /^(category|line|istemplate|templates)-(\d+(?:-\d+)?)$/.exec(lower);
  if (m) {
    const base = { category: 'Category', line: 'Line', istemplate: 'IsTemplate', templates: 'Templates' }[m[1] as 'category'];
    return `${base}-${m[2]}`;
  }
  return lower;
}

// ---------------------------------------------------------------------------------------------
// One connection (one library instance)
// ---------------------------------------------------------------------------------------------

interface Pending {
  id: string;
  action: string;
  list: boolean;
  response: AmiResponse | undefined;
  events: AmiEvent[];
  resolve: (r: AmiListResult) => void;
  reject: (e: AmiError) => void;
  timer: NodeJS.Timeout;
}

interface ConnectionHooks {
  normalize: (raw: RawMessage) => { headers: AmiHeaders; event?: string; actionId?: string; response?: string };
  onEvent: (conn: Connection, event: AmiEvent) => void;
  onClosed: (conn: Connection, error: AmiError) => void;
  onActionTimeout: (conn: Connection) => void;
}

class Connection {
  private readonly lib: LibManager;
  private socket: net.Socket | undefined;
  private tcpConnected = false;
  private dead = false;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners: Array<[string, (...args: never[]) => void]> = [];
  fullyBooted = false;

  constructor(private readonly opts: AmiConnectionOptions, private readonly hooks: ConnectionHooks, private readonly nextId: () => string) {
    // No port: the factory must not connect (and log in without a callback) on its own.
    this.lib = createLibManager(undefined, opts.host, opts.username, opts.secret, true);
  }

  private listen(event: string, fn: (...args: never[]) => void): void {
    this.listeners.push([event, fn]);
    this.lib.on(event, fn);
  }

  /** TCP connect + Login, both within connectTimeoutMs. */
  open(): Promise<void> {
    const { host, port, username, connectTimeoutMs } = this.opts;
    const where = `${host}:${port}`;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const fail = (err: AmiError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.abandon(err);
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(this.tcpConnected
          ? new AmiError('ami.timeout', `Asterisk AMI at ${where} accepted the connection but did not answer Login within ${connectTimeoutMs} ms`, { action: 'Login' })
          : new AmiError('ami.unreachable', `cannot connect to Asterisk AMI at ${where}: no connection within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);

      this.listen('error', ((err: NodeJS.ErrnoException) => {
        if (!settled) {
          fail(new AmiError('ami.unreachable', `cannot connect to Asterisk AMI at ${where}: ${err.code ?? err.message}`, { cause: err }));
        }
      }) as (...args: never[]) => void);
      // 'end' = Asterisk closed its side (FIN); 'close' = the socket is gone. Either ends the
      // connection: an action written after the peer's FIN would never be answered.
      const onClose = (() => {
        if (!settled) {
          fail(new AmiError('ami.unreachable', `Asterisk AMI at ${where} closed the connection before answering Login`));
          return;
        }
        this.closed(new AmiError('ami.disconnected', `connection to Asterisk AMI at ${where} was closed`));
      }) as (...args: never[]) => void;
      this.listen('end', onClose);
      this.listen('close', onClose);
      this.listen('managerevent', ((raw: RawMessage) => this.onEvent(raw)) as (...args: never[]) => void);

      this.connectCapturingSocket(() => {
        this.tcpConnected = true;
        if (this.dead) return;
        this.lib.login((err) => {
          if (settled) return;
          if (err) {
            const message = this.hooks.normalize(err).headers['Message'];
            fail(new AmiError('ami.auth_failed',
              `Asterisk AMI at ${where} refused the login as '${username}' (${typeof message === 'string' ? message : 'Authentication failed'})`,
              { action: 'Login' }));
            return;
          }
          settled = true;
          clearTimeout(timer);
          resolve();
        });
      });
    });
  }

  /**
   * The library creates its socket with net.createConnection() and never exposes it. To be able
   * to destroy() a connection to a hung peer, wrap net.createConnection for the duration of
   * this synchronous call (nothing else can run in between).
   */
  private connectCapturingSocket(onConnect: () => void): void {
    const original = net.createConnection;
    const capture = ((...args: Parameters<typeof net.createConnection>) => {
      const s = original.apply(net, args);
      this.socket = s;
      return s;
    }) as typeof net.createConnection;
    try {
      (net as { createConnection: typeof net.createConnection }).createConnection = capture;
      this.lib.connect(this.opts.port, this.opts.host, onConnect);
    } finally {
      (net as { createConnection: typeof net.createConnection }).createConnection = original;
    }
  }

  /** Send one action; resolves when answered (and, for lists, when the Complete event came). */
  send(fields: Record<string, string>, timeoutMs: number, list: boolean): Promise<AmiListResult> {
    const action = fields['Action'] ?? '';
    return new Promise<AmiListResult>((resolve, reject) => {
      if (this.dead) {
        reject(new AmiError('ami.disconnected', `not connected to Asterisk AMI (${action})`, { action }));
        return;
      }
      const id = this.nextId();
      const entry: Pending = {
        id, action, list, response: undefined, events: [], resolve, reject,
        timer: setTimeout(() => {
          this.pending.delete(entry.id);
          this.lib.removeAllListeners(entry.id);
          reject(new AmiError('ami.timeout', `Asterisk did not answer ${describe(fields)} within ${timeoutMs} ms`, { action }));
          this.hooks.onActionTimeout(this);
        }, timeoutMs),
      };
      this.pending.set(id, entry);
      // The library lowercases field names and then capitalises the first letter; `actionid` is
      // taken as the ActionID. It may append digits to an id it already listens for.
      const libFields: Record<string, string> = { actionid: id };
      for (const [k, v] of Object.entries(fields)) libFields[k.toLowerCase() === 'action' ? 'action' : k] = v;
      const sentId = this.lib.action(libFields, (_err, res) => this.onResponse(sentId, res));
      if (sentId !== id) {
        this.pending.delete(id);
        entry.id = sentId;
        this.pending.set(sentId, entry);
      }
    });
  }

  private onResponse(id: string, raw: RawMessage): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    const n = this.hooks.normalize(raw);
    const message = n.headers['Message'];
    entry.response = {
      response: n.response ?? '',
      actionId: id,
      message: typeof message === 'string' ? message : '',
      headers: n.headers,
    };
    const eventList = n.headers['EventList'];
    const isList = entry.list && entry.response.response === 'Success'
      && typeof eventList === 'string' && eventList.toLowerCase() === 'start';
    if (!isList) this.finish(entry, undefined);
  }

  private onEvent(raw: RawMessage): void {
    const n = this.hooks.normalize(raw);
    const event: AmiEvent = { event: n.event ?? '', actionId: n.actionId, headers: n.headers };
    if (event.event === 'FullyBooted') this.fullyBooted = true;
    const entry = event.actionId !== undefined ? this.pending.get(event.actionId) : undefined;
    if (!entry || !entry.list) {
      this.hooks.onEvent(this, event);
      return;
    }
    // The list ends with its `...Complete` event. ListItems is not checked against the count:
    // it is Asterisk's own tally (per formatter) and the Complete event already proves the end.
    const eventList = header(event.headers, 'EventList');
    if (eventList?.toLowerCase() === 'complete' || /Complete$/.test(event.event)) {
      this.finish(entry, event);
      return;
    }
    entry.events.push(event);
  }

  private finish(entry: Pending, complete: AmiEvent | undefined): void {
    this.pending.delete(entry.id);
    clearTimeout(entry.timer);
    if (entry.response) entry.resolve({ response: entry.response, events: entry.events, complete });
  }

  private closed(error: AmiError): void {
    if (this.dead) return;
    this.abandon(error);
    this.hooks.onClosed(this, error);
  }

  /** Forget this connection: fail what is pending, stop listening, destroy the socket. */
  abandon(error: AmiError): void {
    if (this.dead) return;
    this.dead = true;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      this.lib.removeAllListeners(entry.id);
      entry.reject(new AmiError(error.code, `${error.message} while waiting for the answer to ${entry.action}`, { action: entry.action }));
    }
    this.pending.clear();
    // Only our listeners: the library's own no-op 'error' listener must stay, or a late socket
    // error would be an unhandled 'error' event.
    for (const [event, fn] of this.listeners) this.lib.removeListener(event, fn);
    if (this.socket) this.socket.destroy();
    else if (this.tcpConnected) this.lib.disconnect();
    else this.lib.once('connect', () => this.lib.disconnect());
  }

  /** Send Logoff (best effort, short wait), then abandon. */
  async logoff(): Promise<void> {
    if (this.dead) return;
    try {
      await this.send({ Action: 'Logoff' }, 1000, false);
    } catch {
      // closing anyway
    }
    this.abandon(new AmiError('ami.closed', 'AMI client closed'));
  }
}

/** Actions that change nothing in Asterisk, safe to send twice. */
function isReadOnly(fields: Record<string, string>): boolean {
  const action = (fields['Action'] ?? '').toLowerCase();
  if (['ping', 'coresettings', 'corestatus', 'getconfig', 'listcommands'].includes(action)) return true;
  if (action.startsWith('pjsipshow')) return true;
  if (action === 'command') return /^\s*\S+\s+(show|list)\s/i.test(`${fields['Command'] ?? ''} `);
  return false;
}

function describe(fields: Record<string, string>): string {
  const action = fields['Action'] ?? '?';
  if (action.toLowerCase() === 'reload') return `Reload of module '${fields['Module'] ?? 'All'}'`;
  if (action.toLowerCase() === 'command') return `Command '${fields['Command'] ?? ''}'`;
  return action;
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

export interface AmiClientEvents {
  /** An event that belongs to no pending action (PeerStatus, ContactStatus, Reload, FullyBooted, ...). */
  event: [AmiEvent];
  /** (Re)connected and logged in. */
  connected: [];
  /** The connection dropped; a reconnect is scheduled. */
  disconnected: [AmiError];
  /** A reconnect attempt failed; another one is scheduled. */
  reconnect_failed: [AmiError];
}

interface Waiter {
  resolve: (c: Connection) => void;
  reject: (e: AmiError) => void;
  timer: NodeJS.Timeout;
}

export class AmiClient extends EventEmitter<AmiClientEvents> {
  private readonly opts: Required<AmiConnectionOptions>;
  private conn: Connection | null = null;
  private stateValue: AmiState = 'idle';
  private waiters = new Set<Waiter>();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private lastError: AmiError | undefined;
  private readonly idPrefix = `pbxa${randomBytes(3).toString('hex')}`;
  private idCounter = 0;
  private readonly fingerprintKey = randomBytes(32);

  /** The AMI user this client logs in as. */
  get username(): string {
    return this.opts.username;
  }

  constructor(options: AmiConnectionOptions) {
    super();
    this.opts = {
      keepaliveMs: 0,
      reconnectInitialMs: 500,
      reconnectMaxMs: 30_000,
      ...options,
    } as Required<AmiConnectionOptions>;
  }

  get state(): AmiState {
    return this.stateValue;
  }

  get connected(): boolean {
    return this.stateValue === 'connected';
  }

  /**
   * True once Asterisk sent FullyBooted on the current connection. False means it is still
   * booting (a Reload is then only queued, though answered Success), or that the AMI user cannot
   * read `system` events.
   */
  get fullyBooted(): boolean {
    return this.conn?.fullyBooted ?? false;
  }

  /** Connect and log in once. Rejects with ami.unreachable / ami.auth_failed / ami.timeout. */
  async connect(): Promise<void> {
    if (this.stateValue === 'closed') throw new AmiError('ami.closed', 'AMI client is closed');
    if (this.stateValue === 'connected' || this.stateValue === 'connecting') return;
    this.stateValue = 'connecting';
    try {
      await this.openConnection();
    } catch (err) {
      if (this.stateValue === 'connecting') this.stateValue = 'idle';
      for (const w of this.waiters) {
        clearTimeout(w.timer);
        w.reject(err instanceof AmiError ? err : new AmiError('ami.unreachable', String(err), { cause: err }));
      }
      this.waiters.clear();
      throw err;
    }
  }

  private async openConnection(): Promise<void> {
    const conn = new Connection(this.opts, {
      normalize: (raw) => this.normalize(raw),
      onEvent: (_c, event) => this.emit('event', event),
      onClosed: (c, err) => this.onConnectionClosed(c, err),
      onActionTimeout: (c) => this.dropConnection(c,
        new AmiError('ami.disconnected', 'connection to Asterisk AMI dropped because an earlier action timed out')),
    }, () => `${this.idPrefix}-${++this.idCounter}`);
    await conn.open();
    if (this.stateValue === 'closed') {
      conn.abandon(new AmiError('ami.closed', 'AMI client closed'));
      throw new AmiError('ami.closed', 'AMI client closed while connecting');
    }
    this.conn = conn;
    this.stateValue = 'connected';
    this.attempt = 0;
    this.lastError = undefined;
    this.startKeepalive();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(conn);
    }
    this.waiters.clear();
    this.emit('connected');
  }

  private onConnectionClosed(conn: Connection, err: AmiError): void {
    if (conn !== this.conn) return;
    this.conn = null;
    this.stopKeepalive();
    if (this.stateValue === 'closed') return;
    this.lastError = err;
    this.stateValue = 'reconnecting';
    this.emit('disconnected', err);
    this.scheduleReconnect();
  }

  private dropConnection(conn: Connection, err: AmiError): void {
    if (conn !== this.conn) return;
    conn.abandon(err);
    this.onConnectionClosed(conn, err);
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.stateValue !== 'reconnecting') return;
    const delay = Math.min(this.opts.reconnectInitialMs * 2 ** this.attempt, this.opts.reconnectMaxMs);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.stateValue !== 'reconnecting') return;
      this.openConnection().catch((err: unknown) => {
        const e = err instanceof AmiError ? err : new AmiError('ami.unreachable', String(err), { cause: err });
        if (this.stateValue !== 'reconnecting') return;
        this.lastError = e;
        this.emit('reconnect_failed', e);
        this.scheduleReconnect();
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    if (!this.opts.keepaliveMs) return;
    this.keepaliveTimer = setInterval(() => {
      if (this.stateValue !== 'connected') return;
      // A Ping that times out drops the connection (onActionTimeout); nothing else to do here.
      this.ping().catch(() => undefined);
    }, this.opts.keepaliveMs);
    this.keepaliveTimer.unref();
  }

  private stopKeepalive(): void {
    if (this.keepaliveTimer) clearInterval(this.keepaliveTimer);
    this.keepaliveTimer = undefined;
  }

  /** The live connection, or wait for the reconnect until the deadline. */
  private connection(deadline: number, what: string): Promise<Connection> {
    if (this.conn && this.stateValue === 'connected') return Promise.resolve(this.conn);
    if (this.stateValue === 'closed') return Promise.reject(new AmiError('ami.closed', `AMI client is closed (${what})`));
    if (this.stateValue === 'idle') {
      return Promise.reject(new AmiError('ami.disconnected', `not connected to Asterisk AMI (${what}): call connect() first`));
    }
    return new Promise<Connection>((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          const why = this.lastError ? `: ${this.lastError.message}` : '';
          reject(new AmiError('ami.disconnected',
            `not connected to Asterisk AMI at ${this.opts.host}:${this.opts.port} (${what}); still reconnecting${why}`));
        }, Math.max(0, deadline - Date.now())),
      };
      this.waiters.add(waiter);
    });
  }

  private prepare(fields: AmiFields): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) {
      if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(k)) throw new AmiError('ami.bad_request', `invalid AMI field name '${k}'`);
      if (k.toLowerCase() === 'actionid') throw new AmiError('ami.bad_request', 'ActionID is assigned by the adapter');
      const value = String(v);
      if (/[\r\n]/.test(value)) throw new AmiError('ami.bad_request', `AMI field ${k} contains a line break`);
      out[k.toLowerCase() === 'action' ? 'Action' : k] = value;
    }
    const action = out['Action'];
    if (!action) throw new AmiError('ami.bad_request', 'an AMI action needs an Action field');
    if (/^(login|logoff|challenge)$/i.test(action)) {
      throw new AmiError('ami.bad_request', `${action} is managed by the adapter (connect()/close())`);
    }
    return out;
  }

  private async run(fields: AmiFields, timeoutMs: number | undefined, list: boolean): Promise<AmiListResult> {
    const prepared = this.prepare(fields);
    const timeout = timeoutMs ?? this.opts.actionTimeoutMs;
    const deadline = Date.now() + timeout;
    for (let attempt = 0; ; attempt++) {
      const conn = await this.connection(deadline, describe(prepared));
      try {
        return await conn.send(prepared, Math.max(1, deadline - Date.now()), list);
      } catch (err) {
        // The connection died before answering (e.g. Asterisk hung up right after answering the
        // previous action, before we saw its FIN). A read-only action is repeated once on the
        // next connection; anything else (Reload!) is reported: it may or may not have run.
        const again = attempt === 0 && err instanceof AmiError && err.code === 'ami.disconnected'
          && isReadOnly(prepared) && Date.now() < deadline;
        if (!again) throw err;
      }
    }
  }

  /**
   * Send one action and return its answer, whatever it is (Success, Error, Goodbye). Rejects only
   * when there is no answer: ami.timeout, ami.disconnected, ami.closed, ami.bad_request.
   */
  async action(fields: AmiFields, options: { timeoutMs?: number } = {}): Promise<AmiResponse> {
    return (await this.run(fields, options.timeoutMs, false)).response;
  }

  /**
   * Send a list action (answer `EventList: start`) and collect every event with its ActionID up
   * to the `...Complete` one; unrelated events keep flowing to 'event'. An Error answer resolves
   * with no events (callers decide what it means, e.g. "No endpoints found").
   */
  async listAction(fields: AmiFields, options: { timeoutMs?: number } = {}): Promise<AmiListResult> {
    return this.run(fields, options.timeoutMs, true);
  }

  /**
   * Reload one module (never `core reload`, see DESIGN.md). Success only means Asterisk accepted
   * the request: a bad pjsip.conf still answers Success, and before FullyBooted it is only queued.
   * Verify by reading live state.
   */
  async reload(module: string, timeoutMs?: number): Promise<{ module: string; fullyBooted: boolean }> {
    const timeout = timeoutMs ?? this.opts.actionTimeoutMs;
    let response: AmiResponse;
    try {
      response = await this.action({ Action: 'Reload', Module: module }, { timeoutMs: timeout });
    } catch (err) {
      if (err instanceof AmiError && err.code === 'ami.timeout') {
        throw new AmiError('ami.timeout',
          `Reload of module '${module}' did not answer within ${timeout} ms: the reload may be hung inside Asterisk ` +
          `(reload deadlocks were reported on 20.18.2/20.20.1, asterisk/asterisk#1855 and #2081); ` +
          `until it finishes, other reloads answer "A reload is in progress"`,
          { action: 'Reload', module, cause: err });
      }
      if (err instanceof AmiError) {
        throw new AmiError(err.code, `Reload of module '${module}': ${err.message}`, { action: 'Reload', module, cause: err });
      }
      throw err;
    }
    if (response.response !== 'Success') {
      const code: AmiErrorCode = /no such module/i.test(response.message) ? 'ami.no_such_module'
        : /reload is in progress/i.test(response.message) ? 'ami.reload_in_progress' : refusalCode(response.message) ?? 'ami.reload_failed';
      throw new AmiError(code, `Reload of module '${module}' failed: ${response.message || response.response}`,
        { action: 'Reload', module, response });
    }
    return { module, fullyBooted: this.fullyBooted };
  }

  /**
   * DialplanExtensionAdd with `Replace: yes` (pbx_config.c manager_dialplan_extension_add): sets
   * one priority, or the hint, of an extension in place, creating the context if needed. Asterisk
   * registers it under pbx_config, as if read from extensions.conf (reference transcript p_).
   * Needs write `system`, as Reload does.
   */
  async dialplanSet(
    entry: { context: string; extension: string; priority: number | 'hint'; application: string; data: string },
    options: { timeoutMs?: number } = {},
  ): Promise<void> {
    const r = await this.action({
      Action: 'DialplanExtensionAdd',
      Context: entry.context,
      Extension: entry.extension,
      Priority: String(entry.priority),
      Application: entry.application,
      ...(entry.data !== '' ? { ApplicationData: entry.data } : {}),
      Replace: 'yes',
    }, options);
    if (r.response !== 'Success') {
      throw new AmiError(refusalCode(r.message) ?? 'ami.action_failed',
        `DialplanExtensionAdd ${entry.extension},${entry.priority}@${entry.context} failed: ${r.message}`, { action: 'DialplanExtensionAdd', response: r });
    }
  }

  /**
   * DialplanExtensionRemove: the whole extension, or one priority of it. Resolves false when there
   * was nothing to remove (Asterisk answers "Failed to remove requested extension", transcript p_).
   */
  async dialplanRemove(
    entry: { context: string; extension: string; priority?: number | 'hint' },
    options: { timeoutMs?: number } = {},
  ): Promise<boolean> {
    const r = await this.action({
      Action: 'DialplanExtensionRemove',
      Context: entry.context,
      Extension: entry.extension,
      ...(entry.priority !== undefined ? { Priority: String(entry.priority) } : {}),
    }, options);
    if (r.response === 'Success') return true;
    if (/^Failed to remove requested extension/i.test(r.message)) return false;
    throw new AmiError(refusalCode(r.message) ?? 'ami.action_failed',
      `DialplanExtensionRemove ${entry.extension}@${entry.context} failed: ${r.message}`, { action: 'DialplanExtensionRemove', response: r });
  }

  /** PJSIPShowEndpoints; zero endpoints (Asterisk answers Error "No endpoints found") is []. */
  /**
   * AMI DBPut (main/db.c manager_dbput): one astdb entry. manager.c reads a line into a 1,024-byte
   * buffer and discards a longer one, so callers keep `Val:` lines short (see live-objects.ts).
   */
  async dbPut(family: string, key: string, value: string, options: { timeoutMs?: number } = {}): Promise<void> {
    const r = await this.action({ Action: 'DBPut', Family: family, Key: key, Val: value }, options);
    if (r.response !== 'Success') {
      throw new AmiError(refusalCode(r.message) ?? 'ami.action_failed', `DBPut ${family}/${key} failed: ${r.message}`, { action: 'DBPut', response: r });
    }
  }

  /**
   * AMI DBDelTree of a whole family (main/db.c manager_dbdeltree): every key under /family/.
   * Resolves to false when there was nothing to delete ("Database entry not found").
   */
  async dbDelTree(family: string, options: { timeoutMs?: number } = {}): Promise<boolean> {
    const r = await this.action({ Action: 'DBDelTree', Family: family }, options);
    if (r.response === 'Success') return true;
    if (/not found/i.test(r.message)) return false;
    throw new AmiError(refusalCode(r.message) ?? 'ami.action_failed', `DBDelTree ${family} failed: ${r.message}`, { action: 'DBDelTree', response: r });
  }

  async showEndpoints(options: { timeoutMs?: number } = {}): Promise<EndpointSummary[]> {
    const r = await this.listAction({ Action: 'PJSIPShowEndpoints' }, options);
    if (r.response.response !== 'Success') {
      if (/^No endpoints found/i.test(r.response.message)) return [];
      throw new AmiError('ami.action_failed', `PJSIPShowEndpoints failed: ${r.response.message}`, { action: 'PJSIPShowEndpoints', response: r.response });
    }
    return r.events.filter((e) => e.event === 'EndpointList').map((e) => {
      const h = e.headers;
      const list = (name: string) => (header(h, name) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
      return {
        name: header(h, 'ObjectName') ?? '',
        transport: header(h, 'Transport') ?? '',
        aors: list('Aor'),
        auths: list('Auths'),
        outboundAuths: list('OutboundAuths'),
        contacts: headerAll(h, 'Contacts').flatMap((c) => c.split(',')).map((s) => s.trim()).filter(Boolean),
        deviceState: header(h, 'DeviceState') ?? '',
        activeChannels: header(h, 'ActiveChannels') ?? '',
      };
    });
  }

  /** PJSIPShowEndpoint: the endpoint with its auths (secrets fingerprinted), aors and transport; null if Asterisk has no such endpoint. */
  async showEndpoint(name: string, options: { timeoutMs?: number } = {}): Promise<EndpointDetails | null> {
    const r = await this.listAction({ Action: 'PJSIPShowEndpoint', Endpoint: name }, options);
    if (r.response.response !== 'Success') {
      if (/^Unable to retrieve endpoint/i.test(r.response.message)) return null;
      throw new AmiError('ami.action_failed', `PJSIPShowEndpoint ${name} failed: ${r.response.message}`, { action: 'PJSIPShowEndpoint', response: r.response });
    }
    const details: EndpointDetails = { name, endpoint: {}, auths: [], aors: [], transports: [], other: [] };
    for (const e of r.events) {
      if (e.event === 'EndpointDetail') details.endpoint = e.headers;
      else if (e.event === 'AuthDetail') details.auths.push(e.headers);
      else if (e.event === 'AorDetail') details.aors.push(e.headers);
      else if (e.event === 'TransportDetail') details.transports.push(e.headers);
      else details.other.push(e);
    }
    return details;
  }

  /** PJSIPShowAors; zero aors ("No AORs found") is []. */
  async showAors(options: { timeoutMs?: number } = {}): Promise<AmiHeaders[]> {
    const r = await this.listAction({ Action: 'PJSIPShowAors' }, options);
    if (r.response.response !== 'Success') {
      if (/^No AORs found/i.test(r.response.message)) return [];
      throw new AmiError('ami.action_failed', `PJSIPShowAors failed: ${r.response.message}`, { action: 'PJSIPShowAors', response: r.response });
    }
    return r.events.filter((e) => e.event === 'AorList').map((e) => e.headers);
  }

  /**
   * GetConfig: Asterisk's own parser run on a file in /etc/asterisk (usable as a syntax check of a
   * staged file). Rejects with ami.invalid_config when it does not parse, ami.config_not_found
   * when missing. Secret values are fingerprinted.
   */
  async getConfig(filename: string, options: { category?: string; timeoutMs?: number } = {}): Promise<ConfigCategory[]> {
    const fields: Record<string, string> = { Action: 'GetConfig', Filename: filename };
    if (options.category !== undefined) fields['Category'] = options.category;
    const r = await this.action(fields, options);
    if (r.response !== 'Success') {
      if (/invalid format/i.test(r.message)) {
        throw new AmiError('ami.invalid_config', `Asterisk's config parser rejected ${filename} (${r.message})`, { action: 'GetConfig', response: r });
      }
      if (/not found/i.test(r.message)) {
        throw new AmiError('ami.config_not_found', `Asterisk has no config file ${filename} (${r.message})`, { action: 'GetConfig', response: r });
      }
      throw new AmiError('ami.action_failed', `GetConfig ${filename} failed: ${r.message}`, { action: 'GetConfig', response: r });
    }
    const categories = new Map<string, ConfigCategory>();
    const cat = (index: string) => {
      let c = categories.get(index);
      if (!c) {
        c = { name: '', isTemplate: false, templates: [], lines: [] };
        categories.set(index, c);
      }
      return c;
    };
    const lines: Array<[string, string, string]> = [];
    for (const [key, value] of Object.entries(r.headers)) {
      const v = Array.isArray(value) ? (value[0] ?? '') : (value as string);
      let m: RegExpExecArray | null;
      if ((m = /^Category-(\d+)$/.exec(key))) cat(m[1] ?? '').name = v;
      else if ((m = /^IsTemplate-(\d+)$/.exec(key))) cat(m[1] ?? '').isTemplate = v === '1';
      else if ((m = /^Templates-(\d+)$/.exec(key))) cat(m[1] ?? '').templates = v.split(',').filter(Boolean);
      else if ((m = /^Line-(\d+)-(\d+)$/.exec(key))) lines.push([m[1] ?? '', m[2] ?? '', v]);
    }
    lines.sort((a, b) => (a[0] === b[0] ? Number(a[1]) - Number(b[1]) : Number(a[0]) - Number(b[0])));
    for (const [index, , text] of lines) {
      const eq = text.indexOf('=');
      const name = eq < 0 ? text : text.slice(0, eq);
      const value = eq < 0 ? '' : text.slice(eq + 1);
      cat(index).lines.push({ name, value: SECRET_OPTIONS.has(name.toLowerCase()) ? this.secretFingerprint(value) : value });
    }
    return [...categories.entries()].sort(([a], [b]) => Number(a) - Number(b)).map(([, c]) => c);
  }

  /**
   * Run a CLI command; returns its Output lines (secret values fingerprinted). Unknown command ->
   * ami.no_such_command (e.g. `pjsip reload`, which does not exist in Asterisk 20).
   */
  async command(text: string, options: { timeoutMs?: number } = {}): Promise<string[]> {
    const r = await this.action({ Action: 'Command', Command: text }, options);
    const output = headerAll(r.headers, 'Output').map((line) => this.redactOutputLine(line));
    if (r.response !== 'Success') {
      const first = output[0] ?? r.message;
      const code: AmiErrorCode = /^No such command/i.test(first) ? 'ami.no_such_command' : refusalCode(r.message) ?? 'ami.command_failed';
      throw new AmiError(code, `Command '${text}' failed: ${first}`, { action: 'Command', response: r });
    }
    return output;
  }

  /**
   * ListCommands: the actions this AMI user may send, name → the classes that allow it. Asterisk
   * lists only those the user's write classes cover (manager.c action_listcommands), so this is
   * how the agent learns its own rights without reading manager.conf.
   */
  async listCommands(options: { timeoutMs?: number } = {}): Promise<Map<string, string[]>> {
    const r = await this.action({ Action: 'ListCommands' }, options);
    if (r.response !== 'Success') {
      throw new AmiError(refusalCode(r.message) ?? 'ami.action_failed', `ListCommands failed: ${r.message}`, { action: 'ListCommands', response: r });
    }
    const out = new Map<string, string[]>();
    for (const name of Object.keys(r.headers)) {
      // "Command: Execute Asterisk CLI Command. (Priv: command,all)"
      const priv = /\(Priv: ([^)]*)\)\s*$/.exec(header(r.headers, name) ?? '');
      if (priv) out.set(name.toLowerCase(), priv[1]!.split(',').map((p) => p.trim()));
    }
    return out;
  }

  /** Ping; resolves with the round-trip time in ms. */
  async ping(options: { timeoutMs?: number } = {}): Promise<number> {
    const started = Date.now();
    const r = await this.action({ Action: 'Ping' }, options);
    if (r.response !== 'Success' || header(r.headers, 'Ping') !== 'Pong') {
      throw new AmiError('ami.protocol', `unexpected answer to Ping: ${r.response} ${r.message}`, { action: 'Ping', response: r });
    }
    return Date.now() - started;
  }

  /** CoreSettings: the way to learn the Asterisk version. */
  async coreSettings(options: { timeoutMs?: number } = {}): Promise<CoreSettings> {
    const r = await this.action({ Action: 'CoreSettings' }, options);
    if (r.response !== 'Success') {
      throw new AmiError('ami.action_failed', `CoreSettings failed: ${r.message}`, { action: 'CoreSettings', response: r });
    }
    return { asteriskVersion: header(r.headers, 'AsteriskVersion') ?? '', amiVersion: header(r.headers, 'AMIversion') ?? '', headers: r.headers };
  }

  /** Log off (best effort) and stop reconnecting. Pending and waiting actions fail with ami.closed. */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    this.stopKeepalive();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new AmiError('ami.closed', 'AMI client closed'));
    }
    this.waiters.clear();
    const conn = this.conn;
    this.conn = null;
    if (conn) await conn.logoff();
  }

  /**
   * The keyed fingerprint that stands in for a secret in everything this adapter returns.
   * `auth.Password === client.secretFingerprint(desiredPassword)` checks a live password without
   * exposing it. Empty stays empty.
   */
  secretFingerprint(secret: string): string {
    if (secret === '') return '';
    return `redacted:${createHmac('sha256', this.fingerprintKey).update(secret).digest('hex').slice(0, 32)}`;
  }

  private redactOutputLine(line: string): string {
    // `pjsip show auth X` / `pjsip show transport X`: " password      : secret"
    const m = /^(\s*)([a-z0-9_]+)(\s*:\s)(.*)$/.exec(line);
    if (m && SECRET_OPTIONS.has((m[2] ?? '').toLowerCase())) return `${m[1]}${m[2]}${m[3]}${this.secretFingerprint(m[4] ?? '')}`;
    // `confbridge show profile user X`: "PIN:                     4711", or "None" without one
    // (apps/confbridge/conf_config_parser.c handle_cli_confbridge_show_user_profile).
    const pin = /^(PIN:\s+)(.*)$/.exec(line);
    if (pin && pin[2] !== 'None') return `${pin[1]}${this.secretFingerprint(pin[2] ?? '')}`;
    return line;
  }

  /** Library message -> headers with Asterisk's names, arrays for repeats, secrets fingerprinted. */
  private normalize(raw: RawMessage): { headers: AmiHeaders; event?: string; actionId?: string; response?: string } {
    const eventRaw = raw['event'];
    const eventName = typeof eventRaw === 'string' ? eventRaw : Array.isArray(eventRaw) ? eventRaw[0] : undefined;
    const eventLower = eventName?.toLowerCase();
    const headers: Record<string, string | string[]> = {};
    for (const [lower, value] of Object.entries(raw)) {
      const name = canonicalName(lower, eventLower);
      let v: string | string[];
      if (typeof value === 'string') v = value;
      else if (Array.isArray(value)) v = value.map(String);
      else v = Object.entries(value).map(([k, x]) => `${k}=${x}`); // Variable / ChanVariable
      if (SECRET_HEADERS.has(lower)) v = Array.isArray(v) ? v.map((x) => this.secretFingerprint(x)) : this.secretFingerprint(v);
      headers[name] = v;
    }
    const pick = (k: string) => {
      const v = headers[k];
      return Array.isArray(v) ? v[0] : v;
    };
    return { headers, event: eventName, actionId: pick('ActionID'), response: pick('Response') };
  }
}
