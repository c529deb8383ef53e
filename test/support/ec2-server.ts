/**
 * A loopback EC2 API endpoint for tests, speaking the EC2 query protocol the real
 * @aws-sdk/client-ec2 uses: `POST /` form-encoded `Action=...&Version=2016-11-15`, answers as
 * XML in the namespace http://ec2.amazonaws.com/doc/2016-11-15/, errors as
 * `<Response><Errors><Error><Code>..</Code><Message>..</Message></Error></Errors><RequestID>..</RequestID></Response>`
 * with AWS's HTTP status (UnauthorizedOperation 403, RequestLimitExceeded 503, AuthFailure 401).
 *
 * Answers DescribeAddresses (filter instance-id), DescribeSecurityGroups (GroupId.N) and
 * DescribeInstances (InstanceId.N) from a mutable `world`. Knobs: deny an action, throttle the
 * next N calls of an action, answer an action with any AWS error, delay answers, or hang (hold
 * every answer until release()). Records every answered request with the SigV4 credential scope,
 * so tests can see which key and region the SDK signed with; and every request as it arrives,
 * with how many were waiting for an answer at once.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const EC2_NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

export interface WorldAddress {
  publicIp: string;
  allocationId: string;
  /** Present when associated. */
  associationId?: string;
  instanceId?: string;
  networkInterfaceId?: string;
  privateIpAddress?: string;
}

export interface WorldRule {
  /** tcp, udp, icmp, or -1 (all traffic). */
  protocol: string;
  fromPort?: number;
  toPort?: number;
  cidrs?: string[];
  ipv6Cidrs?: string[];
  prefixListIds?: string[];
  sourceGroupIds?: string[];
}

export interface WorldGroup {
  groupId: string;
  groupName: string;
  vpcId: string;
  ingress: WorldRule[];
}

export interface WorldInstance {
  instanceId: string;
  privateIp: string;
  publicIp?: string;
  vpcId: string;
  groupIds: string[];
}

export interface Ec2World {
  addresses: WorldAddress[];
  securityGroups: WorldGroup[];
  instances: WorldInstance[];
}

export type Ec2ActionName = 'DescribeAddresses' | 'DescribeSecurityGroups' | 'DescribeInstances';

export interface RecordedRequest {
  action: string;
  params: URLSearchParams;
  /** From the SigV4 Authorization header's Credential=AKID/date/region/service/aws4_request. */
  accessKeyId?: string;
  region?: string;
  service?: string;
  securityToken?: string;
}

const xmlEscape = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const el = (name: string, value: string | number | undefined) => (value === undefined ? '' : `<${name}>${xmlEscape(String(value))}</${name}>`);
const items = (name: string, list: string[]) => `<${name}>${list.map((x) => `<item>${x}</item>`).join('')}</${name}>`;

/** Values of a list parameter: Prefix.1, Prefix.2, ... */
function listParam(params: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; params.has(`${prefix}.${i}`); i++) out.push(params.get(`${prefix}.${i}`)!);
  return out;
}

function filters(params: URLSearchParams): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 1; params.has(`Filter.${i}.Name`); i++) out.set(params.get(`Filter.${i}.Name`)!, listParam(params, `Filter.${i}.Value`));
  return out;
}

class Ec2Failure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class FakeEc2 {
  world: Ec2World;
  /** Actions answered UnauthorizedOperation (403). */
  readonly deny = new Set<Ec2ActionName>();
  /** Per action: answer the next N calls RequestLimitExceeded (503). */
  readonly throttle = new Map<Ec2ActionName, number>();
  /** Per action: an AWS error answered instead (e.g. ExpiredToken, 400). */
  readonly failWith = new Map<Ec2ActionName, { status: number; code: string; message: string }>();
  /** Delay before every answer, ms. */
  latencyMs = 0;
  /** Hold every answer until release() (or stop()): a hung endpoint. */
  hang = false;
  /** Every request answered, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Every request's action as it arrived, answered or not. */
  readonly arrived: string[] = [];
  /** Per action: requests waiting for their answer now, and the most there ever were at once. */
  readonly inFlight = new Map<string, number>();
  readonly maxInFlight = new Map<string, number>();
  private readonly held: Array<() => void> = [];
  private server: http.Server | undefined;
  /** Delayed answers not sent yet, cancelled by stop(). */
  private readonly pending = new Set<NodeJS.Timeout>();
  private port = 0;
  private host = '127.0.0.1';

  constructor(world: Ec2World) {
    this.world = world;
  }

  get url(): string {
    return `http://${this.host}:${this.port}`;
  }

  calls(action: Ec2ActionName): RecordedRequest[] {
    return this.requests.filter((r) => r.action === action);
  }

  /** Listens on 127.0.0.1 and a free port, or where `listen` says (e.g. 169.254.169.254:80 in a container). */
  async start(listen: { host?: string; port?: number } = {}): Promise<string> {
    this.host = listen.host ?? '127.0.0.1';
    this.server = http.createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        const action = new URLSearchParams(body).get('Action') ?? '';
        this.arrived.push(action);
        const now = (this.inFlight.get(action) ?? 0) + 1;
        this.inFlight.set(action, now);
        this.maxInFlight.set(action, Math.max(now, this.maxInFlight.get(action) ?? 0));
        res.once('close', () => this.inFlight.set(action, (this.inFlight.get(action) ?? 1) - 1));
        const answer = () => this.handle(req, body, res);
        if (this.hang) this.held.push(answer);
        else if (this.latencyMs > 0) {
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

  /** Answer every held request now, and stop holding. */
  release(): void {
    this.hang = false;
    for (const answer of this.held.splice(0)) answer();
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const t of this.pending) clearTimeout(t);
    this.pending.clear();
    this.held.length = 0;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
    const requestId = randomUUID();
    const reply = (status: number, xml: string) => {
      if (res.destroyed) return;
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>\n${xml}`);
    };
    const fail = (e: Ec2Failure) =>
      reply(e.status, `<Response><Errors><Error>${el('Code', e.code)}${el('Message', e.message)}</Error></Errors>${el('RequestID', requestId)}</Response>`);
    try {
      if (req.method !== 'POST' || (req.url ?? '/').split('?')[0] !== '/') throw new Ec2Failure(400, 'InvalidRequest', 'expected POST /');
      const params = new URLSearchParams(body);
      const action = params.get('Action') ?? '';
      const recorded: RecordedRequest = { action, params };
      const auth = req.headers.authorization ?? '';
      const m = /Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(auth);
      if (m) {
        recorded.accessKeyId = m[1]!;
        recorded.region = m[2]!;
        recorded.service = m[3]!;
      }
      const token = req.headers['x-amz-security-token'];
      if (typeof token === 'string') recorded.securityToken = token;
      this.requests.push(recorded);

      if (!m || !auth.startsWith('AWS4-HMAC-SHA256 ')) throw new Ec2Failure(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
      if (params.get('Version') !== '2016-11-15') throw new Ec2Failure(400, 'InvalidParameterValue', `unsupported Version ${params.get('Version')}`);
      if (action !== 'DescribeAddresses' && action !== 'DescribeSecurityGroups' && action !== 'DescribeInstances') {
        throw new Ec2Failure(400, 'InvalidAction', `The action ${action} is not valid for this web service.`);
      }
      if (this.deny.has(action)) {
        throw new Ec2Failure(403, 'UnauthorizedOperation', 'You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/pbx/i-0123 is not authorized to perform: ec2:' + action);
      }
      const failure = this.failWith.get(action);
      if (failure) throw new Ec2Failure(failure.status, failure.code, failure.message);
      const left = this.throttle.get(action) ?? 0;
      if (left > 0) {
        this.throttle.set(action, left - 1);
        throw new Ec2Failure(503, 'RequestLimitExceeded', 'Request limit exceeded.');
      }
      const inner =
        action === 'DescribeAddresses' ? this.describeAddresses(params) : action === 'DescribeSecurityGroups' ? this.describeSecurityGroups(params) : this.describeInstances(params);
      reply(200, `<${action}Response xmlns="${EC2_NS}">${el('requestId', requestId)}${inner}</${action}Response>`);
    } catch (e) {
      fail(e instanceof Ec2Failure ? e : new Ec2Failure(500, 'InternalError', (e as Error).message));
    }
  }

  private describeAddresses(params: URLSearchParams): string {
    const f = filters(params);
    const ids = f.get('instance-id');
    const list = this.world.addresses.filter((a) => !ids || (a.instanceId !== undefined && ids.includes(a.instanceId)));
    const xml = list.map(
      (a) =>
        el('publicIp', a.publicIp) +
        el('allocationId', a.allocationId) +
        el('domain', 'vpc') +
        el('instanceId', a.instanceId) +
        el('associationId', a.associationId) +
        el('networkInterfaceId', a.networkInterfaceId) +
        el('networkInterfaceOwnerId', a.networkInterfaceId ? '123456789012' : undefined) +
        el('privateIpAddress', a.privateIpAddress) +
        el('publicIpv4Pool', 'amazon') +
        el('networkBorderGroup', 'eu-west-1'),
    );
    return items('addressesSet', xml);
  }

  private describeSecurityGroups(params: URLSearchParams): string {
    const ids = listParam(params, 'GroupId');
    const groups = ids.length ? ids.map((id) => this.world.securityGroups.find((g) => g.groupId === id) ?? id) : this.world.securityGroups;
    const missing = groups.find((g): g is string => typeof g === 'string');
    if (missing !== undefined) throw new Ec2Failure(400, 'InvalidGroup.NotFound', `The security group '${missing}' does not exist`);
    const xml = (groups as WorldGroup[]).map((g) => {
      const perms = g.ingress.map(
        (r) =>
          el('ipProtocol', r.protocol) +
          el('fromPort', r.fromPort) +
          el('toPort', r.toPort) +
          items('groups', (r.sourceGroupIds ?? []).map((id) => el('userId', '123456789012') + el('groupId', id))) +
          items('ipRanges', (r.cidrs ?? []).map((c) => el('cidrIp', c))) +
          items('ipv6Ranges', (r.ipv6Cidrs ?? []).map((c) => el('cidrIpv6', c))) +
          items('prefixListIds', (r.prefixListIds ?? []).map((p) => el('prefixListId', p))),
      );
      const egress = el('ipProtocol', '-1') + '<groups/>' + items('ipRanges', [el('cidrIp', '0.0.0.0/0')]) + '<ipv6Ranges/><prefixListIds/>';
      return (
        el('ownerId', '123456789012') +
        el('groupId', g.groupId) +
        el('groupName', g.groupName) +
        el('groupDescription', `${g.groupName} group`) +
        items('ipPermissions', perms) +
        items('ipPermissionsEgress', [egress]) +
        el('vpcId', g.vpcId)
      );
    });
    return items('securityGroupInfo', xml);
  }

  private describeInstances(params: URLSearchParams): string {
    const ids = listParam(params, 'InstanceId');
    const list = this.world.instances.filter((i) => ids.length === 0 || ids.includes(i.instanceId));
    const missing = ids.find((id) => !list.some((i) => i.instanceId === id));
    if (missing !== undefined) throw new Ec2Failure(400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`);
    const groupSet = (ids: string[]) =>
      items('groupSet', ids.map((id) => el('groupId', id) + el('groupName', this.world.securityGroups.find((g) => g.groupId === id)?.groupName ?? id)));
    const inst = list.map(
      (i) =>
        el('instanceId', i.instanceId) +
        el('imageId', 'ami-0123456789abcdef0') +
        `<instanceState><code>16</code><name>running</name></instanceState>` +
        el('privateIpAddress', i.privateIp) +
        el('ipAddress', i.publicIp) +
        el('vpcId', i.vpcId) +
        groupSet(i.groupIds) +
        items('networkInterfaceSet', [el('networkInterfaceId', 'eni-0a1b2c3d') + el('privateIpAddress', i.privateIp) + groupSet(i.groupIds)]),
    );
    return items('reservationSet', [el('reservationId', 'r-0123456789abcdef0') + el('ownerId', '123456789012') + '<groupSet/>' + items('instancesSet', inst)]);
  }
}

/**
 * The reference deployment as EC2 sees it: `eip` associated with the instance, SIP (UDP 5060)
 * and the whole RTP range (UDP 10000-20000) open in its one security group.
 */
export function referenceWorld(eip: string, instanceId = 'i-0123456789abcdef0'): Ec2World {
  return {
    addresses: [{ publicIp: eip, allocationId: 'eipalloc-0a1', associationId: 'eipassoc-0a1', instanceId, networkInterfaceId: 'eni-0a1b2c3d', privateIpAddress: '172.31.20.5' }],
    securityGroups: [
      {
        groupId: 'sg-0pbx',
        groupName: 'pbx',
        vpcId: 'vpc-0a1b2c3d',
        ingress: [
          { protocol: 'udp', fromPort: 5060, toPort: 5060, cidrs: ['0.0.0.0/0'] },
          { protocol: 'udp', fromPort: 10000, toPort: 20000, cidrs: ['0.0.0.0/0'] },
        ],
      },
    ],
    instances: [{ instanceId, privateIp: '172.31.20.5', publicIp: eip, vpcId: 'vpc-0a1b2c3d', groupIds: ['sg-0pbx'] }],
  };
}

/** An environment for the EC2 worker: loopback keys, and nothing from this machine's AWS setup. */
export function loopbackAwsEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!k.startsWith('AWS_')) env[k] = v;
  return {
    ...env,
    AWS_ACCESS_KEY_ID: 'AKIDLOOPBACKTEST',
    AWS_SECRET_ACCESS_KEY: 'loopback-secret',
    AWS_CONFIG_FILE: '/nonexistent/pbx-agent-test/config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/pbx-agent-test/credentials',
  };
}
