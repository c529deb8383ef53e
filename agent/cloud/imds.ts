/**
 * A small IMDSv2 client over plain node:http (no SDK): a session token (PUT, cached and
 * refreshed), then the few facts the cloud checks need, and the instance role's credentials for
 * the EC2 worker (cached until shortly before they expire, so a check costs no token and no
 * credential request while both are fresh). Short timeouts and a few retries, so that a host
 * that is not on EC2 is recognised within seconds.
 *
 * When the token cannot be had, one tokenless GET tells the cases apart, each with an error an
 * operator can act on: not on EC2 (no connection), slow (connected, but no answer in time), IMDS
 * turned off (403), an IMDSv1-only service (GETs answered without a token, PUT refused), or a
 * PUT response hop limit too low for where the agent runs (GETs answered, the PUT's answer never
 * arrives: a container).
 */
import type * as Http from 'node:http';
import { http } from '../node-http.js';

export const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254';
/** IMDS over IPv6 (Nitro instances with IPv6 metadata turned on). */
export const IPV6_IMDS_ENDPOINT = 'http://[fd00:ec2::254]';
export const DEFAULT_IMDS_TIMEOUT_MS = 1000;

/**
 * Where IMDS is: settings cloud.imds_endpoint; else what the AWS SDKs honour,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT, then AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6
 * (@smithy/credential-provider-imds reads the same two variables); else 169.254.169.254.
 */
export function imdsEndpointFrom(settingsEndpoint: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (settingsEndpoint) return settingsEndpoint;
  const fromEnv = env.AWS_EC2_METADATA_SERVICE_ENDPOINT?.trim();
  if (fromEnv) return fromEnv;
  if (env.AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE?.trim().toLowerCase() === 'ipv6') return IPV6_IMDS_ENDPOINT;
  return DEFAULT_IMDS_ENDPOINT;
}
const TOKEN_PATH = '/latest/api/token';
const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
const TOKEN_HEADER = 'x-aws-ec2-metadata-token';
/** A token is renewed this long before it expires. */
const TOKEN_MARGIN_MS = 60_000;
/**
 * Role credentials are fetched again this long before they expire: "We make new credentials
 * available at least five minutes before the expiration of the old credentials"
 * (docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-metadata-security-credentials.html).
 */
const CREDENTIALS_MARGIN_MS = 5 * 60_000;
const ROLE_PATH = '/latest/meta-data/iam/security-credentials/';

export type ImdsErrorCode =
  /** No connection to the endpoint (refused, no route, none within the timeout): not on EC2, or blocked. */
  | 'unreachable'
  /** Connected, but no answer in time, not even to a GET: IMDS (or a proxy) is slow. */
  | 'timeout'
  /** 403 to the token request: IMDS is turned off for this instance. */
  | 'disabled'
  /** GETs are answered without a token but no token is issued: IMDSv1 only. */
  | 'imdsv1_only'
  /** GETs are answered but the PUT's answer never arrives: hop limit too low (containers). */
  | 'hop_limit'
  /** A fresh token was refused (401) or the token request was malformed (400). */
  | 'token_rejected'
  /** The path does not exist (404). */
  | 'not_found'
  /** Any other HTTP status. */
  | 'http_error'
  /** The answer makes no sense (empty token, malformed value). */
  | 'bad_response';

export class ImdsError extends Error {
  constructor(
    readonly code: ImdsErrorCode,
    message: string,
    readonly details: { path?: string; status?: number; fix?: string } = {},
  ) {
    super(message);
    this.name = 'ImdsError';
  }
  get fix(): string | undefined {
    return this.details.fix;
  }
}

export interface ImdsClientOptions {
  /** Default http://169.254.169.254 (see imdsEndpointFrom). */
  endpoint?: string;
  /** Per request, default 1000 ms (settings cloud.imds_timeout_ms). */
  timeoutMs?: number;
  /** Extra attempts after a network error, a timeout or a 5xx; default 2. */
  retries?: number;
  /** Pause before a retry, default 100 ms (doubled each time). */
  retryDelayMs?: number;
  /** Asked-for token lifetime, 1-21600 s; default 21600. */
  tokenTtlSeconds?: number;
  /** Clock for the token cache, ms (tests). */
  now?: () => number;
}

/** What IMDS tells about this instance. Lists are sorted; absent values are undefined. */
export interface InstanceIdentity {
  instanceId: string;
  region: string;
  availabilityZone?: string;
  /** MAC of the primary network interface. */
  mac: string;
  /** The public IPv4 of the primary interface: the Elastic IP if one is associated, else ephemeral. */
  publicIpv4?: string;
  localIpv4?: string;
  vpcId?: string;
  /** network/interfaces/macs/<mac>/vpc-ipv4-cidr-blocks */
  vpcCidrBlocks: string[];
  /** network/interfaces/macs/<mac>/security-group-ids (empty when IMDS does not say). */
  securityGroupIds: string[];
  /** security-groups: the group names. */
  securityGroupNames: string[];
}

interface RawResponse {
  status: number;
  body: string;
  headers: Http.IncomingHttpHeaders;
}

/** The instance role's temporary credentials (iam/security-credentials/<role>). */
export interface RoleCredentials {
  role: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** ISO time. */
  expiration: string;
}

/** `connected`: the TCP connection was made before the timer ran out (a slow answer, not a missing host). */
type Failure = { kind: 'network'; code: string; message: string } | { kind: 'timeout'; connected: boolean };

class RequestFailure extends Error {
  constructor(readonly failure: Failure) {
    super(failure.kind === 'timeout' ? 'timed out' : failure.message);
  }
}

const IPV4 = /^(\d{1,3})(\.\d{1,3}){3}$/;
const CIDR = /^(\d{1,3})(\.\d{1,3}){3}\/\d{1,2}$/;

function instanceOptionsFix(instanceId: string | undefined, option: string): string {
  return `aws ec2 modify-instance-metadata-options --instance-id ${instanceId ?? '<instance-id>'} ${option}`;
}

export class ImdsClient {
  readonly endpoint: string;
  private readonly url: URL;
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryDelayMs: number;
  private readonly ttlSeconds: number;
  private readonly now: () => number;
  private cached: { value: string; expiresAt: number } | undefined;
  private pendingToken: Promise<string> | undefined;
  private credentials: { value: RoleCredentials | undefined; refreshAt: number } | undefined;
  private pendingCredentials: Promise<RoleCredentials | undefined> | undefined;
  /** How many tokens this client fetched (diagnostics and tests). */
  tokensFetched = 0;

  constructor(options: ImdsClientOptions = {}) {
    this.endpoint = (options.endpoint ?? DEFAULT_IMDS_ENDPOINT).replace(/\/+$/, '');
    this.url = new URL(this.endpoint);
    if (this.url.protocol !== 'http:') throw new Error(`IMDS endpoint must be http://, got ${this.endpoint}`);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_IMDS_TIMEOUT_MS;
    this.retries = options.retries ?? 2;
    this.retryDelayMs = options.retryDelayMs ?? 100;
    this.ttlSeconds = options.tokenTtlSeconds ?? 21600;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1 || this.ttlSeconds > 21600) {
      throw new Error(`IMDS token TTL must be 1-21600 seconds, got ${this.ttlSeconds}`);
    }
    this.now = options.now ?? Date.now;
  }

  /** One HTTP request, no retry. Rejects with RequestFailure on network errors and timeouts. */
  private request(method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          protocol: 'http:',
          hostname: this.url.hostname.replace(/^\[(.*)\]$/, '$1'),
          port: this.url.port || 80,
          method,
          path,
          headers,
          agent: false,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > 64 * 1024) {
              req.destroy(new Error('IMDS answer larger than 64 KiB'));
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers });
          });
          res.on('error', (e) => {
            clearTimeout(timer);
            reject(new RequestFailure({ kind: 'network', code: 'ERESPONSE', message: e.message }));
          });
        },
      );
      let connected = false;
      req.on('socket', (socket) => {
        if (socket.connecting) socket.once('connect', () => (connected = true));
        else connected = true;
      });
      // One timer for the whole exchange (connect + answer), not an idle timeout.
      const timer = setTimeout(() => {
        req.destroy();
        reject(new RequestFailure({ kind: 'timeout', connected }));
      }, this.timeoutMs);
      req.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new RequestFailure({ kind: 'network', code: e.code ?? 'EUNKNOWN', message: e.message }));
      });
      req.end();
    });
  }

  /** request() with retries on network errors, timeouts and 5xx answers. */
  private async requestWithRetry(method: 'GET' | 'PUT', path: string, headers: Record<string, string>): Promise<RawResponse> {
    let delay = this.retryDelayMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.request(method, path, headers);
        if (res.status >= 500 && attempt < this.retries) {
          await sleep(delay);
          delay *= 2;
          continue;
        }
        return res;
      } catch (e) {
        if (!(e instanceof RequestFailure) || attempt >= this.retries) throw e;
        await sleep(delay);
        delay *= 2;
      }
    }
  }

  /** The session token, from the cache while it has more than a minute left. */
  async token(): Promise<string> {
    const c = this.cached;
    if (c && this.now() < c.expiresAt - Math.min(TOKEN_MARGIN_MS, (this.ttlSeconds * 1000) / 10)) return c.value;
    // Concurrent callers share one token request.
    this.pendingToken ??= this.fetchToken().finally(() => {
      this.pendingToken = undefined;
    });
    return this.pendingToken;
  }

  /** Forget the cached token (the next call fetches a new one). */
  dropToken(): void {
    this.cached = undefined;
  }

  private async fetchToken(): Promise<string> {
    let res: RawResponse;
    try {
      res = await this.requestWithRetry('PUT', TOKEN_PATH, { [TTL_HEADER]: String(this.ttlSeconds) });
    } catch (e) {
      if (!(e instanceof RequestFailure)) throw e;
      throw await this.diagnoseTokenFailure(e.failure, undefined);
    }
    if (res.status === 200) {
      const value = res.body.trim();
      if (!value || /[\r\n]/.test(value)) throw new ImdsError('bad_response', `IMDS answered the token request with an empty or malformed token`, { path: TOKEN_PATH });
      const granted = Number(res.headers[TTL_HEADER]);
      const ttl = Number.isInteger(granted) && granted > 0 ? Math.min(granted, this.ttlSeconds) : this.ttlSeconds;
      this.cached = { value, expiresAt: this.now() + ttl * 1000 };
      this.tokensFetched++;
      return value;
    }
    throw await this.diagnoseTokenFailure(undefined, res.status);
  }

  /**
   * The token request failed: one tokenless GET of instance-id tells not-on-EC2, IMDS off,
   * IMDSv1-only and hop-limit problems apart.
   */
  private async diagnoseTokenFailure(failure: Failure | undefined, status: number | undefined): Promise<ImdsError> {
    if (status === 403) {
      return new ImdsError(
        'disabled',
        `instance metadata (IMDS) at ${this.endpoint} refused the token request (403 Forbidden): IMDS is turned off for this instance`,
        { path: TOKEN_PATH, status, fix: `turn it on with IMDSv2 only: ${instanceOptionsFix(undefined, '--http-endpoint enabled --http-tokens required')}` },
      );
    }
    if (status === 400) {
      return new ImdsError('token_rejected', `IMDS at ${this.endpoint} rejected the token request (400 Bad Request)`, {
        path: TOKEN_PATH,
        status,
        fix: 'a proxy between the agent and IMDS may be altering the request (IMDS refuses a PUT carrying X-Forwarded-For); let PUT /latest/api/token through unchanged',
      });
    }
    let probe: RawResponse | undefined;
    try {
      probe = await this.request('GET', '/latest/meta-data/instance-id', {});
    } catch {
      probe = undefined;
    }
    const probeId = probe?.status === 200 && /^i-[0-9a-f]+$/.test(probe.body.trim()) ? probe.body.trim() : undefined;

    if (failure) {
      if (!probe && failure.kind === 'timeout' && failure.connected) {
        // Something accepted the connection: IMDS is there, only late. Off EC2 nothing accepts it.
        return this.slowError(TOKEN_PATH, `the token request (PUT ${TOKEN_PATH}, ${this.retries + 1} tries) or a plain GET`);
      }
      if (!probe) {
        const how = failure.kind === 'timeout' ? `accepted no connection within ${this.timeoutMs} ms` : `cannot be reached (${failure.code})`;
        return new ImdsError(
          'unreachable',
          `instance metadata (IMDS) at ${this.endpoint} ${how}: this host is not an EC2 instance, or a firewall blocks the address`,
          {
            path: TOKEN_PATH,
            fix: 'off EC2 set cloud.enabled: false in the agent settings; on EC2 check that nothing (iptables, an HTTP proxy setting such as HTTP_PROXY without NO_PROXY=169.254.169.254) blocks IMDS',
          },
        );
      }
      // GETs come back, the PUT's answer does not: the PUT response hop limit drops it.
      return new ImdsError(
        'hop_limit',
        `IMDS at ${this.endpoint} answers GET requests (HTTP ${probe.status}) but the token request (PUT ${TOKEN_PATH}) got no answer` +
          `${failure.kind === 'timeout' ? ` within ${this.timeoutMs} ms` : ` (${failure.code})`}: the instance's PUT response hop limit is too low for where pbx-agent runs ` +
          '(the answer to the PUT loses one hop per network bridge, e.g. a container)',
        {
          path: TOKEN_PATH,
          fix: `run pbx-agent on the host itself (hop limit 1 is enough there), or raise the limit for containers: ${instanceOptionsFix(probeId, '--http-put-response-hop-limit 2')}`,
        },
      );
    }
    if (probe?.status === 200) {
      return new ImdsError(
        'imdsv1_only',
        `IMDS at ${this.endpoint} answers without a session token but refused to issue one (HTTP ${status} to PUT ${TOKEN_PATH}): it speaks only IMDSv1. ` +
          'pbx-agent uses IMDSv2 (session tokens) only, which keeps the instance role out of reach of SSRF',
        {
          path: TOKEN_PATH,
          status,
          fix: `require IMDSv2: ${instanceOptionsFix(probeId, '--http-tokens required --http-endpoint enabled')}; if a proxy sits in front of IMDS, let it pass PUT ${TOKEN_PATH}`,
        },
      );
    }
    return new ImdsError('http_error', `IMDS at ${this.endpoint} answered the token request with HTTP ${status}`, {
      path: TOKEN_PATH,
      ...(status !== undefined ? { status } : {}),
    });
  }

  /** IMDS took the connection but answered nothing in time: slow, not absent. */
  private slowError(path: string, what: string): ImdsError {
    return new ImdsError(
      'timeout',
      `instance metadata (IMDS) at ${this.endpoint} accepted the connection but did not answer ${what} within ${this.timeoutMs} ms: it is slow, not missing`,
      {
        path,
        fix:
          `raise cloud.imds_timeout_ms in the agent settings (now ${this.timeoutMs}); if IMDS stays this slow, look for a proxy in front of it ` +
          '(HTTP_PROXY without NO_PROXY=169.254.169.254) or a starved instance (a t3 out of CPU credits: CPUCreditBalance in CloudWatch)',
      },
    );
  }

  /**
   * GET a metadata path with the token. A 401 means the cached token went stale (IMDS restarted,
   * clock skew): one new token and one more try.
   */
  async get(path: string): Promise<string> {
    const got = await this.getOptional(path);
    if (got === undefined) throw new ImdsError('not_found', `IMDS has no ${path} (404)`, { path, status: 404 });
    return got;
  }

  /** Like get(), but a 404 (e.g. public-ipv4 of an instance without one) is undefined. */
  async getOptional(path: string): Promise<string | undefined> {
    for (let attempt = 0; ; attempt++) {
      const token = await this.token();
      let res: RawResponse;
      try {
        res = await this.requestWithRetry('GET', path, { [TOKEN_HEADER]: token });
      } catch (e) {
        if (!(e instanceof RequestFailure)) throw e;
        const f = e.failure;
        if (f.kind === 'timeout' && f.connected) throw this.slowError(path, `GET ${path} (${this.retries + 1} tries)`);
        throw new ImdsError(
          'unreachable',
          `instance metadata (IMDS) at ${this.endpoint} answered the token request, then GET ${path} ${f.kind === 'timeout' ? `got no connection within ${this.timeoutMs} ms` : `failed (${f.code})`}`,
          { path, fix: 'the next check tries again; if it persists, check what sits between the agent and IMDS (iptables, a proxy)' },
        );
      }
      if (res.status === 200) return res.body;
      if (res.status === 404) return undefined;
      if (res.status === 401 && attempt === 0) {
        this.dropToken();
        continue;
      }
      if (res.status === 401) {
        throw new ImdsError('token_rejected', `IMDS at ${this.endpoint} refused a fresh session token for ${path} (401)`, { path, status: 401 });
      }
      if (res.status === 403) {
        throw new ImdsError('disabled', `IMDS at ${this.endpoint} refused ${path} (403 Forbidden): IMDS is turned off for this instance`, {
          path,
          status: 403,
          fix: instanceOptionsFix(undefined, '--http-endpoint enabled --http-tokens required'),
        });
      }
      throw new ImdsError('http_error', `IMDS at ${this.endpoint} answered GET ${path} with HTTP ${res.status}`, { path, status: res.status });
    }
  }

  /** Everything the cloud checks need from IMDS, fetched in parallel after one token. */
  async instanceIdentity(): Promise<InstanceIdentity> {
    await this.token();
    const md = (p: string) => this.get(`/latest/meta-data/${p}`).then((s) => s.trim());
    const opt = (p: string) => this.getOptional(`/latest/meta-data/${p}`).then((s) => s?.trim() || undefined);
    const list = (s: string | undefined) => (s ?? '').split('\n').map((x) => x.trim()).filter(Boolean).sort();

    const [instanceId, region, mac, availabilityZone, publicIpv4, localIpv4, groupNames] = await Promise.all([
      md('instance-id'),
      md('placement/region'),
      md('mac'),
      opt('placement/availability-zone'),
      opt('public-ipv4'),
      opt('local-ipv4'),
      opt('security-groups'),
    ]);
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new ImdsError('bad_response', `IMDS gave a malformed MAC address: ${JSON.stringify(mac)}`, { path: 'mac' });
    const iface = `network/interfaces/macs/${mac.toLowerCase()}`;
    const [cidrs, groupIds, vpcId] = await Promise.all([opt(`${iface}/vpc-ipv4-cidr-blocks`), opt(`${iface}/security-group-ids`), opt(`${iface}/vpc-id`)]);

    for (const [what, v] of [['public-ipv4', publicIpv4], ['local-ipv4', localIpv4]] as const) {
      if (v !== undefined && !IPV4.test(v)) throw new ImdsError('bad_response', `IMDS gave a malformed ${what}: ${JSON.stringify(v)}`, { path: what });
    }
    const vpcCidrBlocks = list(cidrs);
    for (const c of vpcCidrBlocks) if (!CIDR.test(c)) throw new ImdsError('bad_response', `IMDS gave a malformed VPC CIDR block: ${JSON.stringify(c)}`, { path: `${iface}/vpc-ipv4-cidr-blocks` });

    const identity: InstanceIdentity = {
      instanceId,
      region,
      mac: mac.toLowerCase(),
      vpcCidrBlocks,
      securityGroupIds: list(groupIds),
      securityGroupNames: list(groupNames),
    };
    if (availabilityZone !== undefined) identity.availabilityZone = availabilityZone;
    if (publicIpv4 !== undefined) identity.publicIpv4 = publicIpv4;
    if (localIpv4 !== undefined) identity.localIpv4 = localIpv4;
    if (vpcId !== undefined) identity.vpcId = vpcId;
    return identity;
  }

  /**
   * The instance role's credentials, from the cache until five minutes before they expire;
   * undefined when no role is attached (IMDS has no iam/security-credentials/). Concurrent
   * callers share one fetch. The EC2 worker gets them on its stdin, so it asks IMDS nothing.
   */
  async roleCredentials(): Promise<RoleCredentials | undefined> {
    const c = this.credentials;
    if (c && this.now() < c.refreshAt) return c.value;
    this.pendingCredentials ??= this.fetchRoleCredentials().finally(() => {
      this.pendingCredentials = undefined;
    });
    return this.pendingCredentials;
  }

  /** Forget the cached credentials (AWS refused them, or they expired early). */
  dropCredentials(): void {
    this.credentials = undefined;
  }

  private async fetchRoleCredentials(): Promise<RoleCredentials | undefined> {
    const listed = await this.getOptional(ROLE_PATH);
    const role = listed?.split('\n').map((x) => x.trim()).find(Boolean);
    if (role === undefined) {
      // No instance profile: remembered for a minute, then asked again (one may be attached).
      this.credentials = { value: undefined, refreshAt: this.now() + 60_000 };
      return undefined;
    }
    const path = `${ROLE_PATH}${role}`;
    const text = await this.get(path);
    let doc: { Code?: unknown; AccessKeyId?: unknown; SecretAccessKey?: unknown; Token?: unknown; Expiration?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw new ImdsError('bad_response', `IMDS gave credentials for role ${role} that are not JSON`, { path });
    }
    const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
    const accessKeyId = str(doc.AccessKeyId);
    const secretAccessKey = str(doc.SecretAccessKey);
    const sessionToken = str(doc.Token);
    const expiration = str(doc.Expiration);
    const expiresAt = expiration ? Date.parse(expiration) : NaN;
    if (doc.Code !== 'Success' || !accessKeyId || !secretAccessKey || !sessionToken || !Number.isFinite(expiresAt)) {
      // Never the document itself: it holds the secret key.
      throw new ImdsError('bad_response', `IMDS did not give usable credentials for role ${role} (Code: ${JSON.stringify(doc.Code ?? null)})`, { path });
    }
    const value: RoleCredentials = { role, accessKeyId, secretAccessKey, sessionToken, expiration: new Date(expiresAt).toISOString() };
    this.credentials = { value, refreshAt: expiresAt - CREDENTIALS_MARGIN_MS };
    return value;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
