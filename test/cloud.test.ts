/**
 * The cloud checks end to end: the IMDSv2 client against the loopback IMDS, and the REAL
 * @aws-sdk/client-ec2 (in the short-lived worker process) against the loopback EC2 endpoint.
 * Credentials come from the environment (or from the instance role served by the loopback IMDS),
 * the region from IMDS. Timeouts and backoff are short; nothing asserts on time.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { checkCommand } from '../agent/cli/check-command.js';
import type { Io } from '../agent/cli/output.js';
import type { CloudDesired } from '../agent/cloud/checks.js';
import { ec2WorkerPath, workerExecArgv } from '../agent/cloud/ec2.js';
import { CloudCheckState, CloudMonitor, runCloudChecks, type CloudCheckOptions, type CloudReport } from '../agent/cloud/index.js';
import { createLogger } from '../agent/log.js';
import { StateStore } from '../agent/record/state.js';
import { gitSourceFrom } from '../agent/runtime.js';
import { loadSettings } from '../agent/settings.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { FakeEc2, type Ec2World, type WorldRule } from './support/ec2-server.js';
import { GitRemote } from './support/git-remote.js';
import { DEFAULT_INSTANCE, FakeImds } from './support/imds-server.js';

const ID = DEFAULT_INSTANCE.instanceId;
const EIP = '203.0.113.10';
const OTHER_EIP = '198.51.100.7';
const ACCESS_KEY = 'AKIDLOOPBACKTEST';

const REFERENCE_RULES: WorldRule[] = [
  { protocol: 'udp', fromPort: 5060, toPort: 5060, cidrs: ['0.0.0.0/0'] },
  { protocol: 'udp', fromPort: 10000, toPort: 20000, cidrs: ['0.0.0.0/0'] },
  { protocol: 'tcp', fromPort: 22, toPort: 22, cidrs: ['198.51.100.0/24'] },
];

function world(options: { eip?: string | null; rules?: WorldRule[] } = {}): Ec2World {
  const eip = options.eip === undefined ? EIP : options.eip;
  return {
    addresses: [
      ...(eip ? [{ publicIp: eip, allocationId: 'eipalloc-0a1', associationId: 'eipassoc-0a1', instanceId: ID, networkInterfaceId: 'eni-0a1b2c3d', privateIpAddress: '172.31.20.5' }] : []),
      // Someone else's address: must not be taken for ours.
      { publicIp: '192.0.2.99', allocationId: 'eipalloc-0zz', associationId: 'eipassoc-0zz', instanceId: 'i-0fffffffffffffff0', privateIpAddress: '172.31.99.9' },
    ],
    securityGroups: [{ groupId: 'sg-0pbx', groupName: 'pbx', vpcId: 'vpc-0a1b2c3d', ingress: options.rules ?? REFERENCE_RULES }],
    instances: [{ instanceId: ID, privateIp: '172.31.20.5', publicIp: eip ?? '203.0.113.200', vpcId: 'vpc-0a1b2c3d', groupIds: ['sg-0pbx'] }],
  };
}

/** The worker's environment: keys in env, and nothing from the developer's machine. */
function workerEnv(withKeys = true): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_')) env[k] = v;
  env.AWS_CONFIG_FILE = '/nonexistent/pbx-agent-test/config';
  env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/pbx-agent-test/credentials';
  if (withKeys) {
    env.AWS_ACCESS_KEY_ID = ACCESS_KEY;
    env.AWS_SECRET_ACCESS_KEY = 'loopback-secret-key-for-tests';
  }
  return env;
}

function desired(configured = EIP, over: Partial<CloudDesired> = {}): CloudDesired {
  return {
    externalAddress: { configured },
    localNets: ['172.31.0.0/16'],
    transports: [{ protocol: 'udp', port: 5060 }],
    rtp: { portStart: 10000, portEnd: 20000 },
    amiPort: 5038,
    ...over,
  };
}

function capture() {
  const events: Array<Record<string, unknown> & { event?: string; level?: string; msg?: string }> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) events.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger('debug', sink), events, named: (e: string) => events.filter((x) => x.event === e) };
}

describe('cloud checks against loopback IMDS and EC2 (real SDK in the worker process)', function () {
  this.timeout(30_000);
  let imds: FakeImds;
  let ec2: FakeEc2;

  const options = (over: Partial<CloudCheckOptions['settings']> = {}, extra: Partial<CloudCheckOptions> = {}): CloudCheckOptions => ({
    settings: { enabled: true, eip_policy: 'alert', reminder_minutes: 60, imds_timeout_ms: 300, imds_endpoint: imds.url, ec2_endpoint: ec2.url, ...over },
    imds: { timeoutMs: 300, retries: 1, retryDelayMs: 5 },
    ec2: { env: workerEnv(), baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 4, requestTimeoutMs: 3000, timeoutMs: 25_000 },
    ...extra,
  });

  beforeEach(async () => {
    imds = new FakeImds();
    ec2 = new FakeEc2(world());
    await imds.start();
    await ec2.start();
  });
  afterEach(async () => {
    await imds.stop();
    await ec2.stop();
  });

  it('EIP matches and the rules are right: no warning, only Describe* calls, signed for the region IMDS gave', async () => {
    const { log, events } = capture();
    const report = await runCloudChecks({ desired: desired() }, options(), log);
    assert.equal(report.status, 'ok');
    assert.deepEqual(report.counts, { error: 0, warning: 0, info: 3 }, JSON.stringify(report.findings, null, 2));
    assert.deepEqual(report.elasticIp, { publicIp: EIP, allocationId: 'eipalloc-0a1', associationId: 'eipassoc-0a1', instanceId: ID, networkInterfaceId: 'eni-0a1b2c3d', privateIpAddress: '172.31.20.5' });
    assert.deepEqual(report.decision, { action: 'none' });
    assert.deepEqual(ec2.requests.map((r) => r.action).sort(), ['DescribeAddresses', 'DescribeSecurityGroups']);
    for (const r of ec2.requests) {
      assert.equal(r.region, 'eu-west-1');
      assert.equal(r.service, 'ec2');
      assert.equal(r.accessKeyId, ACCESS_KEY);
    }
    const addr = ec2.calls('DescribeAddresses')[0]!.params;
    assert.equal(addr.get('Filter.1.Name'), 'instance-id');
    assert.equal(addr.get('Filter.1.Value.1'), ID);
    assert.equal(ec2.calls('DescribeSecurityGroups')[0]!.params.get('GroupId.1'), 'sg-0pbx');
    assert.ok(report.ec2Worker && report.ec2Worker.peakRssKb > 0 && report.ec2Worker.throttled === 0);
    assert.deepEqual(events.filter((e) => e.level === 'error' || e.level === 'warn'), []);
  });

  it('EIP differs from the explicit external address: drift.eip at error level with expected, actual and fix', async () => {
    ec2.world = world({ eip: OTHER_EIP });
    imds.instance = { ...imds.instance, publicIpv4: OTHER_EIP };
    const { log, named } = capture();
    const report = await runCloudChecks({ desired: desired(EIP) }, options(), log);
    const f = report.findings.find((x) => x.event === 'drift.eip')!;
    assert.equal(f.severity, 'error');
    assert.equal(f.expected, EIP);
    assert.equal(f.actual, `Elastic IP ${OTHER_EIP} (eipalloc-0a1)`);
    assert.match(f.fix, new RegExp(`external_address: ${OTHER_EIP.replace(/\./g, '\\.')}`));
    assert.equal(report.decision.action, 'alert');
    const [line] = named('drift.eip');
    assert.equal(line!.level, 'error');
    assert.equal(line!.expected, EIP);
    assert.equal(line!.actual, `Elastic IP ${OTHER_EIP} (eipalloc-0a1)`);
    assert.match(String(line!.fix), /external_address/);
    assert.match(String(line!.action), /^alert/);
  });

  it('no EIP associated: the ephemeral public IP is refused for auto and is an error for an explicit address', async () => {
    ec2.world = world({ eip: null });
    const monitor = new CloudMonitor(options({ eip_policy: 'adopt' }), capture().log);
    const auto = await monitor.elasticIp();
    assert.ok('problem' in auto, JSON.stringify(auto));
    assert.match(auto.problem, /no Elastic IP is associated with i-0123456789abcdef0; its public address 203\.0\.113\.10 is ephemeral/);
    for (const configured of ['auto', EIP]) {
      // The facts elasticIp() gathered serve both checks: one worker process, not three.
      const report = await runCloudChecks({ desired: desired(configured), facts: monitor.state.lastFacts! }, options({ eip_policy: 'adopt' }), capture().log);
      const f = report.findings.find((x) => x.event === 'drift.eip')!;
      assert.equal(f.severity, 'error', configured);
      assert.match(f.actual, /no Elastic IP; ephemeral public IPv4 203\.0\.113\.10/);
      assert.equal(report.elasticIp, null);
      // Never adopted, whatever the policy.
      assert.equal(report.decision.action, 'alert');
    }
  });

  it('the EIP changes between two checks: drift on the next check, logged once, adopt decision under adopt', async () => {
    const { log, named } = capture();
    const monitor = new CloudMonitor(options({ eip_policy: 'adopt' }), log);
    const first = await monitor.check(desired(EIP));
    assert.equal(first.counts.error, 0);
    assert.deepEqual(first.decision, { action: 'none' });

    ec2.world = world({ eip: OTHER_EIP });
    imds.instance = { ...imds.instance, publicIpv4: OTHER_EIP };
    const second = await monitor.check(desired(EIP));
    assert.equal(second.findings[0]!.event, 'drift.eip');
    assert.equal(second.findings[0]!.severity, 'error');
    assert.deepEqual(second.decision, {
      action: 'adopt',
      address: OTHER_EIP,
      previous: EIP,
      overridesConfig: true,
      reason: `cloud.eip_policy is adopt: the Elastic IP ${OTHER_EIP} replaces external_address ${EIP}`,
    });
    const third = await monitor.check(desired(EIP));
    assert.equal(third.counts.error, 1);
    const lines = named('drift.eip');
    assert.equal(lines.length, 1, 'a persisting drift is logged once, not on every run');
    assert.equal(lines[0]!.reason, 'new');
    assert.equal(lines[0]!.action, `adopt ${OTHER_EIP}`);

    // Under the default policy the same facts only alert.
    const alert = await runCloudChecks({ desired: desired(EIP), facts: monitor.state.lastFacts! }, options(), capture().log);
    assert.equal(alert.decision.action, 'alert');
  });

  it('external_address auto resolves to the associated EIP, and the resolve stage reuses fresh facts', async () => {
    const monitor = new CloudMonitor(options(), capture().log);
    assert.deepEqual(await monitor.elasticIp(), { address: EIP });
    const calls = ec2.requests.length;
    assert.deepEqual(await monitor.elasticIp(), { address: EIP });
    assert.equal(ec2.requests.length, calls, 'no second worker while the facts are fresh');
    const report = await runCloudChecks({ desired: desired('auto'), facts: monitor.state.lastFacts! }, options(), capture().log);
    assert.equal(report.counts.error, 0);
    assert.match(report.findings.find((f) => f.event === 'drift.eip')!.message, /auto resolves to the Elastic IP 203\.0\.113\.10/);
  });

  it('IMDS down or slow: cloud.unavailable logged once, checks skipped, no EC2 call, resumes when IMDS answers', async () => {
    const { log, named } = capture();
    const state = new CloudCheckState({ reminderMinutes: 60 });
    await imds.stop();
    const down = await runCloudChecks({ desired: desired() }, options({}, { state }), log);
    assert.equal(down.status, 'unavailable');
    assert.equal(down.unavailable!.code, 'unreachable');
    await runCloudChecks({ desired: desired() }, options({}, { state }), log);
    assert.equal(named('cloud.unavailable').length, 1);
    assert.match(String(named('cloud.unavailable')[0]!.msg), /cloud checks skipped: instance metadata \(IMDS\) at http:\/\/127\.0\.0\.1:\d+ cannot be reached/);

    imds = new FakeImds();
    imds.latencyMs = 1000;
    await imds.start();
    const slow = await runCloudChecks({ desired: desired() }, options({ imds_endpoint: imds.url }, { state: new CloudCheckState({ reminderMinutes: 60 }) }), log);
    assert.equal(slow.status, 'unavailable');
    assert.equal(slow.unavailable!.code, 'timeout');
    assert.equal(ec2.requests.length, 0);

    imds.latencyMs = 0;
    state.imds = undefined; // the down endpoint's client: use the new one
    const back = await runCloudChecks({ desired: desired() }, options({ imds_endpoint: imds.url }, { state }), log);
    assert.equal(back.status, 'ok');
    assert.equal(named('cloud.available').length, 1);
  });

  it('IMDS without tokens (IMDSv1 only) is refused with an explanation', async () => {
    imds.mode = 'v1-only';
    const { log, named } = capture();
    const report = await runCloudChecks({ desired: desired() }, options(), log);
    assert.equal(report.status, 'unavailable');
    assert.equal(report.unavailable!.code, 'imdsv1_only');
    assert.match(report.unavailable!.message, /speaks only IMDSv1/);
    assert.match(report.unavailable!.fix!, /--http-tokens required/);
    const [line] = named('cloud.unavailable');
    assert.equal(line!.code, 'imdsv1_only');
    assert.match(String(line!.fix), /--http-tokens required/);
    assert.equal(ec2.requests.length, 0);
  });

  it('AccessDenied: a log line naming each missing IAM action, checks degrade to what IMDS tells', async () => {
    ec2.deny.add('DescribeAddresses');
    ec2.deny.add('DescribeSecurityGroups');
    const { log, named } = capture();
    const report = await runCloudChecks({ desired: desired() }, options(), log);
    assert.equal(report.status, 'ok');
    const denied = report.findings.filter((f) => f.event === 'cloud.access_denied');
    assert.deepEqual(denied.map((f) => f.id).sort(), ['denied.DescribeAddresses', 'denied.DescribeSecurityGroups']);
    const lines = named('cloud.access_denied');
    assert.deepEqual(lines.map((l) => l.expected).sort(), ['ec2:DescribeAddresses allowed', 'ec2:DescribeSecurityGroups allowed']);
    for (const l of lines) assert.match(String(l.msg), /the instance role may not call ec2:Describe(Addresses|SecurityGroups) \(UnauthorizedOperation\)/);
    // The explicit address is the public IPv4 from IMDS: cannot be confirmed as Elastic, a warning.
    const eip = report.findings.find((f) => f.event === 'drift.eip')!;
    assert.equal(eip.severity, 'warning');
    assert.equal(report.findings.filter((f) => f.event === 'drift.security_group').length, 0);
    assert.equal(report.elasticIp, undefined);
    // Denied is not retried.
    assert.equal(ec2.calls('DescribeAddresses').length, 1);
  });

  it('throttling: backs off and succeeds; still throttled after every attempt is reported', async () => {
    ec2.throttle.set('DescribeAddresses', 2);
    ec2.throttle.set('DescribeSecurityGroups', 1);
    const ok = await runCloudChecks({ desired: desired() }, options(), capture().log);
    assert.equal(ok.counts.error, 0);
    assert.equal(ok.counts.warning, 0);
    assert.equal(ok.ec2Worker!.throttled, 3);
    assert.equal(ec2.calls('DescribeAddresses').length, 3);
    assert.equal(ec2.calls('DescribeSecurityGroups').length, 2);

    ec2.throttle.set('DescribeAddresses', 100);
    const { log, named } = capture();
    const stuck = await runCloudChecks({ desired: desired() }, options(), log);
    const f = stuck.findings.find((x) => x.id === 'ec2')!;
    assert.equal(f.event, 'cloud.error');
    assert.match(f.message, /ec2:DescribeAddresses was still throttled after backing off \(RequestLimitExceeded\)/);
    assert.equal(f.actual, 'DescribeAddresses: throttled (RequestLimitExceeded, HTTP 503)');
    assert.match(f.fix, /request rate of the account and region/);
    assert.doesNotMatch(f.fix, /grant|policy/);
    assert.equal(named('cloud.error').length, 1);
  });

  describe('a security group with the RTP range partly closed and AMI open to the world', () => {
    let report: CloudReport;
    let events: ReturnType<typeof capture>;
    beforeEach(async () => {
      ec2.world = world({
        rules: [
          { protocol: 'udp', fromPort: 5060, toPort: 5060, cidrs: ['0.0.0.0/0'] },
          { protocol: 'udp', fromPort: 10000, toPort: 14999, cidrs: ['0.0.0.0/0'] },
          { protocol: 'tcp', fromPort: 5038, toPort: 5038, cidrs: ['0.0.0.0/0'] },
        ],
      });
      events = capture();
      report = await runCloudChecks({ desired: desired() }, options(), events.log);
    });

    it('RTP range closed: drift.security_group names the closed ports and the rule to add', () => {
      const f = report.findings.find((x) => x.id === 'sg.rtp')!;
      assert.equal(f.severity, 'error');
      assert.equal(f.event, 'drift.security_group');
      assert.equal(f.actual, '15000-20000 closed for 0.0.0.0/0');
      assert.match(f.fix, /--group-id sg-0pbx --protocol udp --port 15000-20000 --cidr 0\.0\.0\.0\/0/);
    });

    it('AMI port open to the world: drift.security_group error naming the rule', () => {
      const f = report.findings.find((x) => x.id === 'sg.ami_world')!;
      assert.equal(f.severity, 'error');
      assert.equal(f.actual, 'sg-0pbx (pbx): TCP 5038 from 0.0.0.0/0');
      const lines = events.named('drift.security_group');
      assert.deepEqual(lines.map((l) => l.check).sort(), ['sg.ami_world', 'sg.rtp']);
      assert.ok(lines.every((l) => l.level === 'error'));
    });
  });

  it('asks DescribeInstances for the security groups when IMDS does not list them', async () => {
    imds.instance = { ...imds.instance, securityGroupIds: undefined };
    const report = await runCloudChecks({ desired: desired() }, options(), capture().log);
    assert.deepEqual(ec2.calls('DescribeInstances').map((r) => r.params.get('InstanceId.1')), [ID]);
    assert.deepEqual(report.securityGroups, [{ groupId: 'sg-0pbx', groupName: 'pbx' }]);
    assert.equal(report.counts.error, 0);
  });

  it('takes the instance role credentials from IMDS (IMDSv2) through the SDK default chain', async () => {
    imds.role = { name: 'pbx-agent-role', accessKeyId: 'ASIAROLEFROMIMDS', secretAccessKey: 'role-secret', token: 'role-session-token' };
    const withRole = await runCloudChecks(
      { desired: desired() },
      { ...options(), ec2: { ...options().ec2, env: workerEnv(false) } },
      capture().log,
    );
    assert.equal(withRole.counts.warning, 0, JSON.stringify(withRole.findings));
    const last = ec2.requests.at(-1)!;
    assert.equal(last.accessKeyId, 'ASIAROLEFROMIMDS');
    assert.equal(last.securityToken, 'role-session-token');
    assert.ok(imds.stats.byPath.get('GET /latest/meta-data/iam/security-credentials/pbx-agent-role'));
  });

  it('a worker that takes too long is killed and reported once', async () => {
    ec2.latencyMs = 20_000;
    const report = await runCloudChecks({ desired: desired() }, { ...options(), ec2: { ...options().ec2, timeoutMs: 300 } }, capture().log);
    const problems = report.findings.filter((f) => f.event === 'cloud.error');
    assert.equal(problems.length, 1);
    assert.equal(problems[0]!.actual, 'DescribeAddresses: worker (worker_timeout); DescribeSecurityGroups: worker (worker_timeout)');
    assert.match(problems[0]!.fix, /starved of CPU or memory/);
  });
});

/** Polls `cond` until it holds (the mocha timeout bounds the wait); nothing is asserted on time. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

describe('the daemon\'s cloud monitor while EC2 hangs or fails (loopback IMDS and EC2, real SDK)', function () {
  this.timeout(120_000);
  let imds: FakeImds;
  let ec2: FakeEc2;

  const settings = (over: Partial<CloudCheckOptions['settings']> = {}): CloudCheckOptions['settings'] => ({
    enabled: true, eip_policy: 'alert', reminder_minutes: 60, imds_timeout_ms: 1000, imds_endpoint: imds.url, ec2_endpoint: ec2.url, ...over,
  });
  /** Short EC2 timeouts so that a hung endpoint fails within seconds. */
  const quick = (over: Partial<NonNullable<CloudCheckOptions['ec2']>> = {}): NonNullable<CloudCheckOptions['ec2']> => ({
    env: workerEnv(), maxAttempts: 2, requestTimeoutMs: 500, baseDelayMs: 20, maxDelayMs: 40, ...over,
  });

  beforeEach(async () => {
    imds = new FakeImds();
    ec2 = new FakeEc2(world());
    await imds.start();
    await ec2.start();
  });
  afterEach(async () => {
    await imds.stop();
    await ec2.stop();
  });

  it('checks and elasticIp() that come while facts are being gathered join that run: one EC2 worker, never two at once', async () => {
    const monitor = new CloudMonitor({ settings: settings(), ec2: { env: workerEnv() } }, capture().log);
    ec2.hang = true;
    const first = monitor.check(desired());
    const same = monitor.check(desired());
    const address = monitor.elasticIp();
    const other = monitor.check(desired('auto'));
    await until(() => ec2.arrived.includes('DescribeAddresses'));
    // Two more schedule ticks while the endpoint hangs.
    const later = [monitor.check(desired()), monitor.elasticIp(0)];
    assert.equal(monitor.busy, true);
    ec2.release();
    const [a, b, eip, auto] = await Promise.all([first, same, address, other, ...later]);
    assert.equal(a, b, 'the same desired state gets the same report');
    assert.deepEqual(eip, { address: EIP });
    assert.equal((auto as CloudReport).findings.find((f) => f.event === 'drift.eip')!.expected, `the Elastic IP of ${ID}`);
    assert.deepEqual(ec2.arrived.filter((x) => x === 'DescribeAddresses'), ['DescribeAddresses'], 'one worker asked EC2 once for all six calls');
    assert.equal(ec2.maxInFlight.get('DescribeAddresses'), 1);
  });

  it('EC2 hanging after a drift was found: drift.eip neither changes nor resolves, the failure is said once, and goes away once', async () => {
    ec2.world = world({ eip: OTHER_EIP });
    imds.instance = { ...imds.instance, publicIpv4: OTHER_EIP };
    let now = Date.parse('2026-12-01T10:00:00Z');
    const { log, named } = capture();
    const monitor = new CloudMonitor({ settings: settings(), ec2: quick(), now: () => now }, log);
    const found = await monitor.check(desired(EIP));
    const drift = found.findings.find((f) => f.event === 'drift.eip')!;
    assert.equal(drift.severity, 'error');

    ec2.hang = true;
    for (let i = 0; i < 3; i++) {
      now += 5_000;
      const during = await monitor.check(desired(EIP));
      const kept = during.findings.find((f) => f.event === 'drift.eip')!;
      // The last known finding stands, marked with when it was made.
      assert.deepEqual({ ...kept, lastChecked: undefined }, { ...drift, lastChecked: undefined });
      assert.equal(kept.lastChecked, '2026-12-01T10:00:00.000Z');
      const failure = during.findings.find((f) => f.id === 'ec2')!;
      assert.equal(failure.event, 'cloud.error');
      assert.match(failure.actual, /^DescribeAddresses: timeout \(RequestTimeout\)/);
    }
    ec2.release();
    now += 5_000;
    await monitor.check(desired(EIP));

    assert.deepEqual(named('drift.eip').map((l) => l.reason), ['new'], 'no "changed" while EC2 hung, none when it came back');
    assert.deepEqual(named('cloud.error').map((l) => [l.check, l.reason]), [['ec2', 'new']]);
    assert.deepEqual(named('drift.resolved').map((l) => l.check), ['ec2']);
    const open = monitor.openDrifts();
    assert.deepEqual(open.map((d) => [d.event, d.check, d.severity, d.since, d.lastReminder]), [['drift.eip', 'eip', 'error', '2026-12-01T10:00:00.000Z', '2026-12-01T10:00:00.000Z']]);
    assert.equal(open[0]!.message, drift.message);
  });

  it('a hung EC2 endpoint is reported as a timeout of the call, before the worker would be killed (kill timeout derived from the retries)', async () => {
    ec2.hang = true;
    const { log, named } = capture();
    // No kill timeout given: it follows from this plan. Before, each request only logged a warning
    // after requestTimeout and the worker was killed after 30 s, losing what had happened.
    const report = await runCloudChecks({ desired: desired() }, { settings: settings(), ec2: quick({ maxAttempts: 4, maxDelayMs: 100 }) }, log);
    const f = report.findings.find((x) => x.id === 'ec2')!;
    assert.equal(f.actual, 'DescribeAddresses: timeout (RequestTimeout); DescribeSecurityGroups: timeout (RequestTimeout)');
    assert.match(f.message, /ec2:DescribeAddresses got no answer in time \(RequestTimeout\): http:\/\/127\.0\.0\.1:\d+ did not answer within 500 ms/);
    assert.match(f.fix, /took the request and did not answer/);
    assert.equal(ec2.arrived.filter((x) => x === 'DescribeAddresses').length, 4, 'every attempt of the plan was made');
    assert.equal(named('cloud.error').length, 1);
  });

  it('a kill timeout shorter than the retry plan: the worker stops retrying before its deadline and still says why', async () => {
    ec2.hang = true;
    // 20 attempts of 1 s would need over 40 s; the worker is given 10.
    const report = await runCloudChecks(
      { desired: desired() },
      { settings: settings(), ec2: quick({ maxAttempts: 20, requestTimeoutMs: 1000, baseDelayMs: 100, maxDelayMs: 1000, timeoutMs: 10_000 }) },
      capture().log,
    );
    const f = report.findings.find((x) => x.id === 'ec2')!;
    assert.match(f.actual, /^DescribeAddresses: timeout \((RequestTimeout|DeadlineExceeded)\); DescribeSecurityGroups: timeout/);
    assert.doesNotMatch(f.actual, /worker/);
    const attempts = ec2.arrived.filter((x) => x === 'DescribeAddresses').length;
    assert.ok(attempts >= 1 && attempts < 20, `${attempts} attempts`);
  });

  it('each EC2 failure gets its own fix: only access denied says to grant the action', async () => {
    const run = async () => (await runCloudChecks({ desired: desired('auto') }, { settings: settings(), ec2: quick() }, capture().log)).findings;
    const fixes = async () => {
      const fs = await run();
      const eip = fs.find((f) => f.event === 'drift.eip')!;
      const failure = fs.find((f) => f.event === 'cloud.error' || f.event === 'cloud.access_denied')!;
      return { eip: eip.fix, failure: failure.fix, actual: failure.actual };
    };

    ec2.deny.add('DescribeAddresses');
    const denied = await fixes();
    assert.match(denied.eip, /^add ec2:DescribeAddresses on Resource "\*" to the instance role's policy/);
    assert.match(denied.failure, /^add ec2:DescribeAddresses/);
    ec2.deny.clear();

    const cases: Array<[string, () => void, RegExp, RegExp]> = [
      ['throttled', () => ec2.throttle.set('DescribeAddresses', 100), /throttled \(RequestLimitExceeded, HTTP 503\)/, /request rate of the account and region/],
      ['expired credentials', () => ec2.failWith.set('DescribeAddresses', { status: 400, code: 'ExpiredToken', message: 'The security token included in the request is expired' }), /expired \(ExpiredToken, HTTP 400\)/, /fresh credentials for the next check/],
      ['clock off', () => ec2.failWith.set('DescribeAddresses', { status: 400, code: 'RequestExpired', message: 'Request has expired.' }), /expired \(RequestExpired, HTTP 400\)/, /system clock/],
      ['hung endpoint', () => (ec2.hang = true), /timeout \(RequestTimeout\)/, /took the request and did not answer/],
    ];
    for (const [what, arrange, actual, fix] of cases) {
      ec2.throttle.clear();
      ec2.failWith.clear();
      ec2.release();
      arrange();
      const got = await fixes();
      assert.match(got.actual, actual, what);
      assert.match(got.failure, fix, what);
      assert.match(got.eip, fix, `drift.eip names the same fix (${what})`);
      for (const text of [got.eip, got.failure]) assert.doesNotMatch(text, /ec2:DescribeAddresses|policy/, what);
    }
    ec2.release();

    // Nothing listens at the endpoint.
    await ec2.stop();
    const gone = await runCloudChecks({ desired: desired('auto') }, { settings: settings(), ec2: quick() }, capture().log);
    const failure = gone.findings.find((f) => f.id === 'ec2')!;
    assert.match(failure.actual, /^DescribeAddresses: unreachable \(ECONNREFUSED\)/);
    assert.match(failure.fix, /HTTPS \(TCP 443\) to http:\/\/127\.0\.0\.1:\d+/);
    assert.doesNotMatch(failure.fix, /policy/);
  });

  it('one IMDS token and one fetch of the role credentials serve many checks; the credentials are fetched again near their expiry', async () => {
    imds.role = { name: 'pbx-agent-role', accessKeyId: 'ASIAROLEFROMIMDS', secretAccessKey: 'role-secret', token: 'role-session-token' };
    let now = Date.now();
    const monitor = new CloudMonitor({ settings: settings(), ec2: { ...quick(), env: workerEnv(false) }, now: () => now }, capture().log);
    const count = (key: string) => imds.stats.byPath.get(key) ?? 0;
    for (let i = 0; i < 3; i++) {
      const r = await monitor.check(desired());
      assert.equal(r.counts.error + r.counts.warning, 0, JSON.stringify(r.findings));
    }
    assert.equal(imds.stats.tokenRequests, 1, 'one token for three checks (the worker asks IMDS nothing)');
    assert.equal(count('GET /latest/meta-data/iam/security-credentials/'), 1);
    assert.equal(count('GET /latest/meta-data/iam/security-credentials/pbx-agent-role'), 1);
    assert.ok(ec2.requests.every((r) => r.accessKeyId === 'ASIAROLEFROMIMDS' && r.securityToken === 'role-session-token'));

    // The stand-in's credentials expire 6 h after they were given: 4 minutes before that, new ones.
    now += 6 * 3600_000 - 4 * 60_000;
    await monitor.check(desired());
    assert.equal(count('GET /latest/meta-data/iam/security-credentials/pbx-agent-role'), 2);
    assert.equal(imds.stats.tokenRequests, 1, 'the 6 h token is still good');
  });

  it('a slow IMDS is reported as slow, not as "not an EC2 instance"; cloud.imds_timeout_ms lets it answer', async () => {
    imds.latencyMs = 1500;
    const slow = await runCloudChecks({ desired: desired() }, { settings: settings(), ec2: quick() }, capture().log);
    assert.equal(slow.status, 'unavailable');
    assert.equal(slow.unavailable!.code, 'timeout');
    assert.match(slow.unavailable!.message, /accepted the connection but did not answer .* within 1000 ms: it is slow, not missing/);
    assert.doesNotMatch(slow.unavailable!.message, /not an EC2 instance/);
    assert.match(slow.unavailable!.fix!, /raise cloud\.imds_timeout_ms .*\(now 1000\)/);
    assert.doesNotMatch(slow.unavailable!.fix!, /cloud\.enabled: false/);

    const patient = await runCloudChecks({ desired: desired() }, { settings: settings({ imds_timeout_ms: 5000 }), ec2: quick() }, capture().log);
    assert.equal(patient.status, 'ok', JSON.stringify(patient.unavailable));
  });

  it('honours AWS_EC2_METADATA_SERVICE_ENDPOINT; cloud.imds_endpoint wins over it', async () => {
    const viaEnv = await runCloudChecks({ desired: desired() }, { settings: settings({ imds_endpoint: undefined }), env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url }, ec2: quick() }, capture().log);
    assert.equal(viaEnv.status, 'ok', JSON.stringify(viaEnv.unavailable));
    assert.equal(imds.stats.tokenRequests, 1);

    const other = new FakeImds();
    await other.start();
    try {
      const both = await runCloudChecks({ desired: desired() }, { settings: settings({ imds_endpoint: other.url }), env: { AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.url }, ec2: quick() }, capture().log);
      assert.equal(both.status, 'ok');
      assert.equal(other.stats.tokenRequests, 1);
      assert.equal(imds.stats.tokenRequests, 1, 'the environment\'s endpoint was not asked');
    } finally {
      await other.stop();
    }
  });
});

describe('the EC2 worker process', () => {
  it('inherits only the module-loading node flags (never -e code, --input-type or --inspect)', () => {
    assert.deepEqual(workerExecArgv(['--import', 'tsx']), ['--import', 'tsx']);
    assert.deepEqual(workerExecArgv(['--import=tsx', '--enable-source-maps']), ['--import=tsx', '--enable-source-maps']);
    assert.deepEqual(workerExecArgv(['--input-type=module', '-e', 'await run()', '--inspect=9229']), []);
    assert.deepEqual(workerExecArgv(['-r', './preflight.cjs', '--loader', 'x.mjs', '-p', '1+1', '--max-old-space-size=64']), ['-r', './preflight.cjs', '--loader', 'x.mjs']);
  });

  it('is found next to this module (.ts under tsx)', () => {
    assert.match(ec2WorkerPath(), /agent\/cloud\/ec2-worker\.ts$/);
  });
});

describe('the daemon never imports the AWS SDK', () => {
  it('only agent/cloud/ec2-worker.ts mentions @aws-sdk', async () => {
    const root = path.resolve(import.meta.dirname, '..');
    const offenders: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(p);
        else if (p.endsWith('.ts') && /(import|require)\s*\(?\s*['"]@aws-sdk\//.test(await readFile(p, 'utf8'))) offenders.push(path.relative(root, p));
      }
    };
    await walk(path.join(root, 'agent'));
    assert.deepEqual(offenders, ['agent/cloud/ec2-worker.ts']);
  });
});

describe('pbx-agent check', function () {
  this.timeout(30_000);
  let imds: FakeImds;
  let ec2: FakeEc2;
  let saved: NodeJS.ProcessEnv;

  before(() => {
    saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('AWS_')) delete process.env[k];
    Object.assign(process.env, workerEnv());
  });
  after(async () => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
    await removeTempRepos();
  });
  beforeEach(async () => {
    imds = new FakeImds();
    ec2 = new FakeEc2(world());
    await imds.start();
    await ec2.start();
  });
  afterEach(async () => {
    await imds.stop();
    await ec2.stop();
  });

  async function setup(pbx: string, settingsExtra = '') {
    const host = await tempDir('pbx-agent-check-');
    const configDir = path.join(host, 'etc/asterisk');
    await mkdir(path.join(host, 'secrets'), { recursive: true });
    await mkdir(configDir, { recursive: true });
    const settingsFile = path.join(host, 'agent.yaml');
    await writeFile(
      settingsFile,
      [`secrets_dir: ${path.join(host, 'secrets')}`, `state_dir: ${path.join(host, 'state')}`, 'asterisk:', `  config_dir: ${configDir}`, 'cloud:', `  imds_endpoint: ${imds.url}`, `  ec2_endpoint: ${ec2.url}`, settingsExtra, ''].join('\n'),
    );
    const dir = await makeRepo({ 'pbx.yaml': pbx, 'extensions/staff.yaml': BASE_EXTENSIONS });
    return { dir, settingsFile, configDir, stateDir: path.join(host, 'state') };
  }

  function io() {
    const out: string[] = [];
    const err: string[] = [];
    const sink: Io = { out: (t) => void out.push(t), err: (t) => void err.push(t) };
    return { sink, out: () => out.join('\n'), err: () => err.join('\n') };
  }

  const AUTO_PBX = edit(BASE_PBX, 'external_address: 203.0.113.10', 'external_address: auto');

  it('auto: renders with the Elastic IP, reports --json, exit 0', async () => {
    const { dir, settingsFile } = await setup(AUTO_PBX);
    const o = io();
    const code = await checkCommand({ dir, settingsFile, json: true }, o.sink);
    const json = JSON.parse(o.out());
    assert.equal(code, 0, o.out());
    assert.equal(json.ok, true);
    assert.equal(json.status, 'ok');
    assert.deepEqual(json.externalAddress, { configured: 'auto', rendered: EIP });
    assert.equal(json.render.ok, true);
    assert.equal(json.counts.error, 0);
    assert.equal(json.instance.instanceId, ID);
  });

  it('prints each finding with expected, actual and fix, and exits non-zero on an error-level finding', async () => {
    ec2.world = world({ rules: [...REFERENCE_RULES, { protocol: 'tcp', fromPort: 5038, toPort: 5038, cidrs: ['0.0.0.0/0'] }] });
    const { dir, settingsFile, stateDir } = await setup(BASE_PBX);
    // What Asterisk advertises comes from the applied record in the state, not from the text.
    await new StateStore(stateDir).write({
      consecutiveFailures: 0,
      applied: {
        revision: 'r1', fingerprint: 'f', at: new Date().toISOString(), files: {},
        network: { advertised: { address: EIP, source: 'config', configured: EIP }, localNets: [], transports: [{ protocol: 'udp', port: 5060 }], rtp: { portStart: 10000, portEnd: 20000 } },
      },
    });
    const o = io();
    const code = await checkCommand({ dir, settingsFile, json: false }, o.sink);
    const text = o.out();
    assert.equal(code, 3, text);
    assert.match(text, /^Cloud checks of i-0123456789abcdef0 \(eu-west-1a\)/);
    assert.match(text, /Elastic IP 203\.0\.113\.10 \(eipalloc-0a1\)/);
    assert.match(text, new RegExp(`external_address  ${EIP.replace(/\./g, '\\.')}; rendered ${EIP.replace(/\./g, '\\.')}; applied ${EIP.replace(/\./g, '\\.')}`));
    assert.match(text, /^ERROR {4}drift\.security_group {2}the Asterisk Manager port \(AMI, TCP 5038\) is open to the whole internet/m);
    assert.match(text, /expected: TCP 5038 not open to every address \(0\.0\.0\.0\/0 or ::\/0, in one rule or in several\)/);
    assert.match(text, /fix: {6}aws ec2 revoke-security-group-ingress --group-id sg-0pbx/);
    assert.match(text, /^Result: 1 error, 0 warnings, 2 ok; EC2 worker \d+\.\d s, peak \d+ MiB\.$/m);
  });

  it('auto without an Elastic IP: the render is refused and drift.eip is an error', async () => {
    ec2.world = world({ eip: null });
    const { dir, settingsFile } = await setup(AUTO_PBX);
    const o = io();
    const code = await checkCommand({ dir, settingsFile, json: false }, o.sink);
    const text = o.out();
    assert.equal(code, 3, text);
    assert.match(text, /^ERROR {4}drift\.eip/m);
    assert.match(text, /Rendering the config repo with these host facts fails/);
    assert.match(text, /network\.external_address: is "auto" but the Elastic IP cannot be used: no Elastic IP is associated/);
  });

  it('without DIR on a host, checks the checkout the agent synced, not the current directory', async () => {
    // cloud-init runs the bootstrap's `pbx-agent check` from /, where there is no config repo.
    const { settingsFile } = await setup(AUTO_PBX);
    const remote = await GitRemote.create();
    const commit = await remote.commit({ 'pbx.yaml': AUTO_PBX, 'extensions/staff.yaml': BASE_EXTENSIONS });
    await remote.push();
    const stateDir = path.join(path.dirname(settingsFile), 'state');
    await writeFile(settingsFile, `${await readFile(settingsFile, 'utf8')}source:\n  url: file://${remote.bare}\n`);

    const before = io();
    assert.equal(await checkCommand({ settingsFile, json: false }, before.sink), 3);
    assert.match(before.err(), /^check: nothing has been synced from file:\/\/.* yet \(no checkout in .*\/state\/repo\); run pbx-agent sync first/);

    const { settings } = await loadSettings(settingsFile, { mustExist: true });
    const fetched = await gitSourceFrom(settings!).fetch();
    assert.ok(fetched.ok);
    await new StateStore(stateDir).write({ consecutiveFailures: 0, applied: { revision: commit.slice(0, 12), commit, fingerprint: 'f', at: new Date().toISOString(), files: {} } });
    // The current directory (the project) holds no pbx.yaml: a check of "." would fail.
    const o = io();
    assert.equal(await checkCommand({ settingsFile, json: true }, o.sink), 0, o.out() + o.err());
    const json = JSON.parse(o.out());
    assert.equal(json.dir, path.join(stateDir, 'repo'));
    assert.equal(json.revision, commit.slice(0, 12));
    assert.deepEqual(json.externalAddress, { configured: 'auto', rendered: EIP });
  });

  it('not on EC2: says why the checks could not run, exit 3; cloud.enabled false: exit 0', async () => {
    await imds.stop();
    const { dir, settingsFile } = await setup(BASE_PBX);
    const o = io();
    assert.equal(await checkCommand({ dir, settingsFile, json: false }, o.sink), 3);
    assert.match(o.out(), /^Cloud checks could not run \(unreachable\): instance metadata \(IMDS\)/);
    assert.match(o.out(), /cloud\.enabled: false/);

    const off = await setup(BASE_PBX, '  enabled: false');
    const o2 = io();
    assert.equal(await checkCommand({ dir: off.dir, settingsFile: off.settingsFile, json: false }, o2.sink), 0);
    assert.match(o2.out(), /turned off/);
  });
});
