/**
 * A loopback EC2 instance metadata service (IMDS) for tests, with IMDSv2 token semantics:
 * `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1-21600) issues a token;
 * GETs carry it in `X-aws-ec2-metadata-token`; without one they get 401 while IMDSv1 is off.
 * A PUT carrying X-Forwarded-For is refused (403), as IMDS does.
 *
 * Knobs: mode (v2 only, optional, v1 only, disabled), latency on every answer, a PUT that never
 * answers (the hop-limit symptom in containers), failures (500) for the next N requests, token
 * revocation, and the instance role's credentials for the SDK's default chain.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ImdsInstance {
  instanceId: string;
  region: string;
  availabilityZone: string;
  mac: string;
  /** undefined: the instance has no public IPv4 (404). */
  publicIpv4?: string;
  localIpv4: string;
  vpcId: string;
  vpcCidrBlocks: string[];
  /** undefined: 404 for security-group-ids (then the agent asks DescribeInstances). */
  securityGroupIds?: string[];
  securityGroupNames: string[];
}

export type ImdsMode =
  /** HttpTokens=required: GETs without a valid token get 401. */
  | 'v2'
  /** HttpTokens=optional: tokenless GETs work too. */
  | 'optional'
  /** An IMDSv1-only service: PUT /latest/api/token is 404, GETs need no token. */
  | 'v1-only'
  /** HttpEndpoint=disabled: 403 to everything. */
  | 'disabled';

export interface ImdsRole {
  name: string;
  accessKeyId: string;
  secretAccessKey: string;
  token: string;
}

export const DEFAULT_INSTANCE: ImdsInstance = {
  instanceId: 'i-0123456789abcdef0',
  region: 'eu-west-1',
  availabilityZone: 'eu-west-1a',
  mac: '0a:1b:2c:3d:4e:5f',
  publicIpv4: '203.0.113.10',
  localIpv4: '172.31.20.5',
  vpcId: 'vpc-0a1b2c3d',
  vpcCidrBlocks: ['172.31.0.0/16'],
  securityGroupIds: ['sg-0pbx'],
  securityGroupNames: ['pbx'],
};

export class FakeImds {
  instance: ImdsInstance;
  mode: ImdsMode;
  /** Delay before every answer, ms. */
  latencyMs = 0;
  /** PUT /latest/api/token is read but never answered (the answer "dies" on the way). */
  dropTokenRequests = false;
  /** The next N requests (any) are answered 500. */
  failNext = 0;
  role: ImdsRole | undefined;
  readonly stats = { tokenRequests: 0, gets: 0, unauthorized: 0, byPath: new Map<string, number>() };
  /** TTLs asked for, in order. */
  readonly ttlsRequested: number[] = [];
  private readonly tokens = new Map<string, number>();
  private server: http.Server | undefined;
  /** Delayed answers not sent yet, cancelled by stop(). */
  private readonly pending = new Set<NodeJS.Timeout>();
  private port = 0;
  private host = '127.0.0.1';

  constructor(options: { instance?: Partial<ImdsInstance>; mode?: ImdsMode; role?: ImdsRole } = {}) {
    this.instance = { ...DEFAULT_INSTANCE, ...(options.instance ?? {}) };
    this.mode = options.mode ?? 'v2';
    this.role = options.role;
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  /** Every token issued so far stops working (as after an IMDS restart). */
  revokeTokens(): void {
    this.tokens.clear();
  }

  /** Listens on 127.0.0.1 and a free port, or where `listen` says (e.g. 169.254.169.254:80 in a container). */
  async start(listen: { host?: string; port?: number } = {}): Promise<string> {
    this.host = listen.host ?? '127.0.0.1';
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const answer = () => this.handle(req, res);
        if (this.latencyMs > 0) {
          const timer = setTimeout(() => {
            this.pending.delete(timer);
            answer();
          }, this.latencyMs);
          this.pending.add(timer);
        } else answer();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(listen.port ?? 0, this.host, resolve));
    this.port = (this.server!.address() as AddressInfo).port;
    return this.url;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private send(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
    if (res.destroyed) return;
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0]!;
    this.stats.byPath.set(`${req.method} ${path}`, (this.stats.byPath.get(`${req.method} ${path}`) ?? 0) + 1);
    if (this.failNext > 0) {
      this.failNext--;
      return this.send(res, 500, 'Internal Server Error');
    }
    if (this.mode === 'disabled') return this.send(res, 403, 'Forbidden');

    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return this.send(res, 405, 'Method Not Allowed');
      this.stats.tokenRequests++;
      if (this.mode === 'v1-only') return this.send(res, 404, 'Not Found');
      if (req.headers['x-forwarded-for'] !== undefined) return this.send(res, 403, 'Forbidden');
      const ttlText = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
      const ttl = Number(ttlText);
      if (typeof ttlText !== 'string' || !/^\d+$/.test(ttlText) || ttl < 1 || ttl > 21600) return this.send(res, 400, 'Bad Request');
      this.ttlsRequested.push(ttl);
      if (this.dropTokenRequests) return; // never answered: the client times out
      const token = randomBytes(24).toString('base64url');
      this.tokens.set(token, Date.now() + ttl * 1000);
      return this.send(res, 200, token, { 'x-aws-ec2-metadata-token-ttl-seconds': String(ttl) });
    }

    if (req.method !== 'GET') return this.send(res, 405, 'Method Not Allowed');
    this.stats.gets++;
    const token = req.headers['x-aws-ec2-metadata-token'];
    if (typeof token === 'string' && this.mode !== 'v1-only') {
      const expires = this.tokens.get(token);
      if (expires === undefined || expires < Date.now()) {
        this.stats.unauthorized++;
        return this.send(res, 401, 'Unauthorized');
      }
    } else if (this.mode === 'v2') {
      this.stats.unauthorized++;
      return this.send(res, 401, 'Unauthorized');
    }
    const value = this.lookup(path);
    if (value === undefined) return this.send(res, 404, 'Not Found');
    return this.send(res, 200, value);
  }

  private lookup(path: string): string | undefined {
    const i = this.instance;
    const md = '/latest/meta-data/';
    if (!path.startsWith(md)) return undefined;
    const key = path.slice(md.length);
    const iface = `network/interfaces/macs/${i.mac}/`;
    const table: Record<string, string | undefined> = {
      'instance-id': i.instanceId,
      'placement/region': i.region,
      'placement/availability-zone': i.availabilityZone,
      mac: i.mac,
      'public-ipv4': i.publicIpv4,
      'local-ipv4': i.localIpv4,
      'security-groups': i.securityGroupNames.join('\n'),
      [`${iface}vpc-id`]: i.vpcId,
      [`${iface}vpc-ipv4-cidr-blocks`]: i.vpcCidrBlocks.join('\n'),
      [`${iface}security-group-ids`]: i.securityGroupIds?.join('\n'),
      [`${iface}local-ipv4s`]: i.localIpv4,
      [`${iface}public-ipv4s`]: i.publicIpv4,
    };
    if (key in table) return table[key];
    if (this.role) {
      if (key === 'iam/security-credentials/' || key === 'iam/security-credentials') return this.role.name;
      if (key === `iam/security-credentials/${this.role.name}`) {
        return JSON.stringify({
          Code: 'Success',
          LastUpdated: new Date().toISOString(),
          Type: 'AWS-HMAC',
          AccessKeyId: this.role.accessKeyId,
          SecretAccessKey: this.role.secretAccessKey,
          Token: this.role.token,
          Expiration: new Date(Date.now() + 6 * 3600_000).toISOString(),
        });
      }
    }
    return undefined;
  }
}
