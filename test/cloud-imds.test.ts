/**
 * The IMDSv2 client (agent/cloud/imds.ts) against the loopback IMDS: token semantics, caching
 * and refresh, retries, and the coded errors for not-on-EC2, slow IMDS, IMDS off, IMDSv1-only
 * and the hop-limit problem. Timeouts are kept short; nothing asserts on time.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_IMDS_ENDPOINT, ImdsClient, ImdsError, imdsEndpointFrom } from '../agent/cloud/imds.js';
import { FakeImds } from './support/imds-server.js';

const FAST = { timeoutMs: 250, retries: 1, retryDelayMs: 5 };

async function rejectsWith(p: Promise<unknown>, code: string): Promise<ImdsError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ImdsError, `expected an ImdsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ImdsError ${code}, got success`);
}

/** A port with nothing listening on it (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('IMDSv2 client', () => {
  let imds: FakeImds;
  beforeEach(async () => {
    imds = new FakeImds();
    await imds.start();
  });
  afterEach(async () => {
    await imds.stop();
  });

  it('reads the instance facts with one token, and the token from the cache afterwards', async () => {
    const client = new ImdsClient({ endpoint: imds.url, ...FAST });
    const id = await client.instanceIdentity();
    assert.deepEqual(id, {
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
    });
    await client.instanceIdentity();
    assert.equal(imds.stats.tokenRequests, 1);
    assert.deepEqual(imds.ttlsRequested, [21600]);
    assert.equal(imds.stats.unauthorized, 0);
  });

  it('lists several VPC CIDR blocks and has no public IPv4 when IMDS has none', async () => {
    imds.instance = { ...imds.instance, vpcCidrBlocks: ['172.31.0.0/16', '10.1.0.0/16'], publicIpv4: undefined };
    const id = await new ImdsClient({ endpoint: imds.url, ...FAST }).instanceIdentity();
    assert.deepEqual(id.vpcCidrBlocks, ['10.1.0.0/16', '172.31.0.0/16']);
    assert.equal(id.publicIpv4, undefined);
  });

  it('refreshes the token before it expires (injected clock)', async () => {
    let now = 1_000_000;
    const client = new ImdsClient({ endpoint: imds.url, ...FAST, tokenTtlSeconds: 600, now: () => now });
    await client.get('/latest/meta-data/instance-id');
    now += 500_000; // 100 s left: still used (refresh margin is min(60 s, TTL/10))
    await client.get('/latest/meta-data/instance-id');
    assert.equal(imds.stats.tokenRequests, 1);
    now += 50_000; // 50 s left: renewed
    await client.get('/latest/meta-data/instance-id');
    assert.equal(imds.stats.tokenRequests, 2);
    assert.deepEqual(imds.ttlsRequested, [600, 600]);
  });

  it('gets a new token once when IMDS no longer knows the cached one (401)', async () => {
    const client = new ImdsClient({ endpoint: imds.url, ...FAST });
    await client.get('/latest/meta-data/instance-id');
    imds.revokeTokens();
    assert.equal((await client.get('/latest/meta-data/placement/region')).trim(), 'eu-west-1');
    assert.equal(imds.stats.tokenRequests, 2);
    assert.equal(imds.stats.unauthorized, 1);
  });

  it('retries a failed request (500) and succeeds', async () => {
    imds.failNext = 1;
    const client = new ImdsClient({ endpoint: imds.url, ...FAST });
    assert.equal(await client.get('/latest/meta-data/instance-id'), 'i-0123456789abcdef0');
  });

  it('refuses a token TTL outside 1-21600 before asking', () => {
    assert.throws(() => new ImdsClient({ tokenTtlSeconds: 0 }), /1-21600/);
    assert.throws(() => new ImdsClient({ tokenTtlSeconds: 21601 }), /1-21600/);
  });

  it('not on EC2 (nothing listening): unreachable, with the way out', async () => {
    const port = await closedPort();
    const e = await rejectsWith(new ImdsClient({ endpoint: `http://127.0.0.1:${port}`, ...FAST }).instanceIdentity(), 'unreachable');
    assert.match(e.message, /cannot be reached \(ECONNREFUSED\): this host is not an EC2 instance/);
    assert.match(e.fix!, /cloud\.enabled: false/);
  });

  it('a slow IMDS (answers after 5 s, default 1 s timeout) is slow, not "not an EC2 instance": its own message and fix', async () => {
    imds.latencyMs = 5000;
    const e = await rejectsWith(new ImdsClient({ endpoint: imds.url }).instanceIdentity(), 'timeout');
    assert.match(e.message, /accepted the connection but did not answer the token request \(PUT \/latest\/api\/token, 3 tries\) or a plain GET within 1000 ms: it is slow, not missing/);
    assert.doesNotMatch(e.message, /not an EC2 instance/);
    assert.match(e.fix!, /^raise cloud\.imds_timeout_ms in the agent settings \(now 1000\)/);
    assert.doesNotMatch(e.fix!, /cloud\.enabled: false/);
  });

  it('a GET that gets no answer after the token is slow too', async () => {
    const client = new ImdsClient({ endpoint: imds.url, ...FAST });
    await client.token();
    imds.latencyMs = 1000;
    const e = await rejectsWith(client.get('/latest/meta-data/instance-id'), 'timeout');
    assert.match(e.message, /did not answer GET \/latest\/meta-data\/instance-id \(2 tries\) within 250 ms/);
    assert.match(e.fix!, /cloud\.imds_timeout_ms/);
  });

  it('IMDS turned off (403): disabled', async () => {
    imds.mode = 'disabled';
    const e = await rejectsWith(new ImdsClient({ endpoint: imds.url, ...FAST }).instanceIdentity(), 'disabled');
    assert.match(e.fix!, /--http-endpoint enabled/);
  });

  it('IMDSv1 only (no tokens issued, GETs answered without one): refused, with an explanation', async () => {
    imds.mode = 'v1-only';
    const e = await rejectsWith(new ImdsClient({ endpoint: imds.url, ...FAST }).instanceIdentity(), 'imdsv1_only');
    assert.match(e.message, /speaks only IMDSv1/);
    assert.match(e.message, /IMDSv2/);
    // The fix names this instance, learnt from the tokenless answer, and the option to set.
    assert.match(e.fix!, /--instance-id i-0123456789abcdef0 --http-tokens required/);
    // Nothing else was read without a token.
    assert.equal(imds.stats.gets, 1);
  });

  it('role credentials: fetched once and cached until five minutes before they expire; none without a role', async () => {
    let now = Date.now();
    const client = new ImdsClient({ endpoint: imds.url, ...FAST, now: () => now });
    assert.equal(await client.roleCredentials(), undefined, 'no role attached');
    imds.role = { name: 'pbx', accessKeyId: 'ASIAONE', secretAccessKey: 'secret-one', token: 'session-one' };
    now += 61_000; // "no role" is remembered for a minute
    const [a, b] = await Promise.all([client.roleCredentials(), client.roleCredentials()]);
    assert.equal(a, b, 'concurrent callers share one fetch');
    assert.equal(a!.accessKeyId, 'ASIAONE');
    assert.equal(a!.sessionToken, 'session-one');
    const path = 'GET /latest/meta-data/iam/security-credentials/pbx';
    assert.equal(imds.stats.byPath.get(path), 1);
    await client.roleCredentials();
    assert.equal(imds.stats.byPath.get(path), 1);
    now = Date.parse(a!.expiration) - 4 * 60_000;
    imds.role = { ...imds.role, accessKeyId: 'ASIATWO' };
    assert.equal((await client.roleCredentials())!.accessKeyId, 'ASIATWO');
    client.dropCredentials();
    await client.roleCredentials();
    assert.equal(imds.stats.byPath.get(path), 3);
  });

  it('finds its endpoint like the SDKs do: cloud.imds_endpoint, else AWS_EC2_METADATA_SERVICE_ENDPOINT, else the IPv6 mode, else 169.254.169.254', () => {
    const env = { AWS_EC2_METADATA_SERVICE_ENDPOINT: 'http://127.0.0.1:1338' };
    assert.equal(imdsEndpointFrom('http://127.0.0.1:9', env), 'http://127.0.0.1:9');
    assert.equal(imdsEndpointFrom(undefined, env), 'http://127.0.0.1:1338');
    assert.equal(imdsEndpointFrom(undefined, { AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: 'IPv6' }), 'http://[fd00:ec2::254]');
    assert.equal(imdsEndpointFrom(undefined, {}), DEFAULT_IMDS_ENDPOINT);
  });

  it('PUT answer lost (hop limit) while GETs work: hop_limit, with the option to raise', async () => {
    imds.dropTokenRequests = true;
    for (const mode of ['v2', 'optional'] as const) {
      imds.mode = mode;
      const e = await rejectsWith(new ImdsClient({ endpoint: imds.url, ...FAST }).instanceIdentity(), 'hop_limit');
      assert.match(e.message, /hop limit/);
      assert.match(e.fix!, /--http-put-response-hop-limit 2/);
      assert.match(e.fix!, /on the host itself/);
    }
  });
});
