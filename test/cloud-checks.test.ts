/**
 * The cloud checks as pure functions (agent/cloud/checks.ts) and the DriftReporter: no servers,
 * no processes. The end-to-end cases against loopback IMDS/EC2 are in cloud.test.ts.
 */
import assert from 'node:assert/strict';
import { covered, parseCidr, uncovered, WORLD } from '../agent/cloud/address-space.js';
import {
  checkElasticIp,
  checkLocalNet,
  checkSecurityGroups,
  ec2FailureFix,
  elasticIpFor,
  eipDecision,
  evaluateCloud,
  problemFindings,
  type CloudDesired,
  type CloudFacts,
  type Finding,
} from '../agent/cloud/checks.js';
import type { Ec2ErrorInfo, Ec2ErrorKind, IngressRule, SecurityGroupFacts } from '../agent/cloud/ec2-protocol.js';
import { DEFAULT_EC2_RETRY_PLAN, workerKillTimeoutMs, worstCallMs } from '../agent/cloud/ec2.js';
import { DriftReporter } from '../agent/cloud/index.js';

const INSTANCE = 'i-0123456789abcdef0';

function desired(over: Partial<CloudDesired> = {}, external: CloudDesired['externalAddress'] = { configured: '203.0.113.10' }): CloudDesired {
  return {
    externalAddress: external,
    localNets: ['172.31.0.0/16'],
    transports: [{ protocol: 'udp', port: 5060 }],
    rtp: { portStart: 10000, portEnd: 20000 },
    amiPort: 5038,
    ...over,
  };
}

function rule(protocol: string, from: number | undefined, to: number | undefined, cidrs: string[], extra: Partial<IngressRule> = {}): IngressRule {
  return {
    protocol,
    ...(from !== undefined ? { fromPort: from } : {}),
    ...(to !== undefined ? { toPort: to } : {}),
    ipv4Ranges: cidrs,
    ipv6Ranges: [],
    prefixListIds: [],
    sourceGroupIds: [],
    ...extra,
  };
}

const GOOD_RULES = [rule('udp', 5060, 5060, ['0.0.0.0/0']), rule('udp', 10000, 20000, ['0.0.0.0/0']), rule('tcp', 22, 22, ['198.51.100.7/32'])];

function facts(over: { publicIpv4?: string | null; eips?: CloudFacts['elasticIps'] | null; rules?: IngressRule[]; groups?: SecurityGroupFacts[]; vpc?: string[] } = {}): CloudFacts {
  const publicIpv4 = over.publicIpv4 === null ? undefined : (over.publicIpv4 ?? '203.0.113.10');
  const f: CloudFacts = {
    instance: {
      instanceId: INSTANCE,
      region: 'eu-west-1',
      mac: '0a:1b:2c:3d:4e:5f',
      localIpv4: '172.31.20.5',
      vpcCidrBlocks: over.vpc ?? ['172.31.0.0/16'],
      securityGroupIds: ['sg-1'],
      securityGroupNames: ['pbx'],
      ...(publicIpv4 !== undefined ? { publicIpv4 } : {}),
    },
    securityGroups: over.groups ?? [{ groupId: 'sg-1', groupName: 'pbx', ingress: over.rules ?? GOOD_RULES }],
    problems: [],
  };
  if (over.eips !== null) {
    f.elasticIps = over.eips ?? [{ publicIp: '203.0.113.10', allocationId: 'eipalloc-1', associationId: 'eipassoc-1', instanceId: INSTANCE, privateIpAddress: '172.31.20.5' }];
  }
  return f;
}

const bad = (fs: Finding[]) => fs.filter((f) => f.severity !== 'info');

describe('cloud checks: Elastic IP', () => {
  it('is quiet when the explicit external address is the Elastic IP', () => {
    const fs = checkElasticIp(desired(), facts());
    assert.deepEqual(bad(fs), []);
    assert.equal(fs[0]!.severity, 'info');
    assert.deepEqual(eipDecision(desired(), facts(), 'alert'), { action: 'none' });
  });

  it('reports an explicit address that is not the Elastic IP at error level, with expected, actual and fix', () => {
    const f = facts({ publicIpv4: '198.51.100.7', eips: [{ publicIp: '198.51.100.7', allocationId: 'eipalloc-2', privateIpAddress: '172.31.20.5' }] });
    const [finding, ...rest] = checkElasticIp(desired(), f);
    assert.equal(rest.length, 0);
    assert.equal(finding!.severity, 'error');
    assert.equal(finding!.event, 'drift.eip');
    assert.equal(finding!.expected, '203.0.113.10');
    assert.match(finding!.actual, /198\.51\.100\.7 \(eipalloc-2\)/);
    assert.match(finding!.fix, /external_address: 198\.51\.100\.7/);
    assert.deepEqual(eipDecision(desired(), f, 'alert'), { action: 'alert', reason: 'external_address 203.0.113.10 is not the Elastic IP 198.51.100.7 (cloud.eip_policy: alert)' });
    const adopt = eipDecision(desired(), f, 'adopt');
    assert.equal(adopt.action, 'adopt');
    assert.ok(adopt.action === 'adopt' && adopt.address === '198.51.100.7' && adopt.overridesConfig && adopt.previous === '203.0.113.10');
  });

  it('refuses an ephemeral public IP: no Elastic IP is an error, for auto and explicit alike, and is never adopted', () => {
    const f = facts({ eips: [] });
    for (const d of [desired(), desired({}, { configured: 'auto' })]) {
      const [finding] = checkElasticIp(d, f);
      assert.equal(finding!.severity, 'error');
      assert.match(finding!.message, /ephemeral/);
      assert.match(finding!.actual, /no Elastic IP; ephemeral public IPv4 203\.0\.113\.10/);
      assert.match(finding!.fix, /allocate-address/);
      assert.equal(eipDecision(d, f, 'adopt').action, 'alert');
    }
    const auto = elasticIpFor(f);
    assert.ok('problem' in auto && /ephemeral/.test(auto.problem) && /associate an Elastic IP/.test(auto.problem), JSON.stringify(auto));
  });

  it('resolves auto to the Elastic IP, preferring the one on the primary private address', () => {
    assert.deepEqual(elasticIpFor(facts()), { address: '203.0.113.10' });
    const two = facts({
      eips: [
        { publicIp: '198.51.100.1', privateIpAddress: '172.31.99.9' },
        { publicIp: '198.51.100.2', privateIpAddress: '172.31.20.5' },
      ],
    });
    assert.deepEqual(elasticIpFor(two), { address: '198.51.100.2' });
    const none = facts({ eips: [{ publicIp: '198.51.100.1', privateIpAddress: '172.31.99.9' }, { publicIp: '198.51.100.3', privateIpAddress: '172.31.99.8' }], publicIpv4: '198.51.100.9' });
    assert.ok('problem' in elasticIpFor(none));
    assert.deepEqual(elasticIpFor({ unavailable: 'not on EC2' }), { problem: 'not on EC2' });
  });

  it('auto: a changed Elastic IP is drift against what Asterisk advertises, and the decision adopts it whatever the policy', () => {
    const d = desired({}, { configured: 'auto', live: '203.0.113.10' });
    const f = facts({ publicIpv4: '198.51.100.7', eips: [{ publicIp: '198.51.100.7', privateIpAddress: '172.31.20.5' }] });
    const [finding] = checkElasticIp(d, f);
    assert.equal(finding!.severity, 'error');
    assert.match(finding!.message, /advertises 203\.0\.113\.10 but the Elastic IP .* is now 198\.51\.100\.7/);
    const decision = eipDecision(d, f, 'alert');
    assert.ok(decision.action === 'adopt' && decision.address === '198.51.100.7' && !decision.overridesConfig, JSON.stringify(decision));
  });

  it('degrades to IMDS when DescribeAddresses is denied', () => {
    const f = facts({ eips: null });
    f.problems.push({ kind: 'access_denied', code: 'UnauthorizedOperation', message: 'no', action: 'DescribeAddresses', iamAction: 'ec2:DescribeAddresses', httpStatus: 403 });
    // explicit = the public IPv4: cannot be confirmed as Elastic, warning.
    assert.equal(checkElasticIp(desired(), f)[0]!.severity, 'warning');
    // explicit != the public IPv4: error.
    assert.equal(checkElasticIp(desired({}, { configured: '198.51.100.50' }), f)[0]!.severity, 'error');
    // auto: cannot resolve.
    const auto = checkElasticIp(desired({}, { configured: 'auto' }), f)[0]!;
    assert.equal(auto.severity, 'error');
    assert.match(auto.message, /ec2:DescribeAddresses/);
    const problem = elasticIpFor(f);
    assert.ok('problem' in problem && problem.problem.includes('ec2:DescribeAddresses'));
    const [denied] = problemFindings(f);
    assert.equal(denied!.event, 'cloud.access_denied');
    assert.match(denied!.message, /ec2:DescribeAddresses/);
    assert.match(denied!.fix, /ec2:DescribeAddresses/);
  });

  it('an adopted address that pbx.yaml does not say yet is a warning', () => {
    const d = desired({}, { configured: '203.0.113.10', live: '198.51.100.7' });
    const f = facts({ publicIpv4: '198.51.100.7', eips: [{ publicIp: '198.51.100.7', privateIpAddress: '172.31.20.5' }] });
    const [finding] = checkElasticIp(d, f);
    assert.equal(finding!.severity, 'warning');
    assert.deepEqual(eipDecision(d, f, 'adopt'), { action: 'none' });
  });
});

describe('cloud checks: security groups', () => {
  it('passes the reference deployment: UDP 5060 and 10000-20000 open, SSH restricted', () => {
    assert.deepEqual(bad(checkSecurityGroups(desired(), facts())), []);
  });

  it('names the closed part of the RTP range and the rule that would open it', () => {
    const fs = checkSecurityGroups(desired(), facts({ rules: [rule('udp', 5060, 5060, ['0.0.0.0/0']), rule('udp', 10000, 15000, ['0.0.0.0/0'])] }));
    assert.equal(fs.length, 1);
    const [f] = fs;
    assert.equal(f!.id, 'sg.rtp');
    assert.equal(f!.severity, 'error');
    assert.equal(f!.event, 'drift.security_group');
    assert.equal(f!.actual, '15001-20000 closed for 0.0.0.0/0');
    assert.match(f!.fix, /^aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol udp --port 15001-20000 --cidr 0\.0\.0\.0\/0$/);
  });

  it('an RTP range opened in pieces across groups, by protocol number, or by an all-traffic rule counts as open', () => {
    const groups: SecurityGroupFacts[] = [
      { groupId: 'sg-1', ingress: [rule('17', 5060, 5060, ['0.0.0.0/0']), rule('udp', 10000, 12000, ['0.0.0.0/0'])] },
      { groupId: 'sg-2', ingress: [rule('udp', 12001, 20000, ['0.0.0.0/0'])] },
    ];
    assert.deepEqual(bad(checkSecurityGroups(desired(), facts({ groups }))), []);
    const all = checkSecurityGroups(desired(), facts({ rules: [rule('-1', undefined, undefined, ['0.0.0.0/0'])] }));
    // Everything reachable... including AMI and SSH, which is an error each.
    assert.deepEqual(all.filter((f) => f.severity === 'error').map((f) => f.id).sort(), ['sg.ami_world', 'sg.ssh_world']);
    assert.match(all.find((f) => f.id === 'sg.ami_world')!.actual, /all traffic from 0\.0\.0\.0\/0/);
  });

  it('requires TCP for tcp and tls transports, UDP for udp', () => {
    const d = desired({ transports: [{ protocol: 'udp', port: 5060 }, { protocol: 'tls', port: 5061 }] });
    const fs = bad(checkSecurityGroups(d, facts()));
    assert.deepEqual(fs.map((f) => f.id), ['sg.sip.tls.5061']);
    assert.match(fs[0]!.expected, /^TCP 5061/);
  });

  it('errors on the AMI port (the configured one) or SSH open to the world, IPv4 or IPv6', () => {
    const rules = [...GOOD_RULES, rule('tcp', 5000, 5100, [], { ipv6Ranges: ['::/0'] }), rule('tcp', 22, 22, ['0.0.0.0/0'])];
    const fs = bad(checkSecurityGroups(desired(), facts({ rules })));
    assert.deepEqual(fs.map((f) => f.id).sort(), ['sg.ami_world', 'sg.ssh_world']);
    const ami = fs.find((f) => f.id === 'sg.ami_world')!;
    assert.match(ami.message, /TCP 5038/);
    assert.match(ami.fix, /revoke-security-group-ingress --group-id sg-1 --ip-permissions 'IpProtocol=tcp,FromPort=5000,ToPort=5100,Ipv6Ranges=\[\{CidrIpv6=::\/0\}\]'/);
    // A moved AMI port is what counts.
    assert.deepEqual(bad(checkSecurityGroups(desired({ amiPort: 7777 }), facts({ rules: [...GOOD_RULES, rule('tcp', 5038, 5038, ['0.0.0.0/0'])] }))), []);
  });

  it('warns on SIP open to the world only when allowed_networks is set, and then checks those networks', () => {
    const d = desired({ allowedNetworks: ['198.51.100.0/24'] });
    const fs = bad(checkSecurityGroups(d, facts()));
    assert.deepEqual(fs.map((f) => [f.id, f.severity]), [['sg.sip_world.udp.5060', 'warning']]);
    const narrow = facts({ rules: [rule('udp', 5060, 5060, ['198.51.0.0/16']), rule('udp', 10000, 20000, ['0.0.0.0/0'])] });
    assert.deepEqual(bad(checkSecurityGroups(d, narrow)), []);
    const tooNarrow = facts({ rules: [rule('udp', 5060, 5060, ['198.51.100.0/25']), rule('udp', 10000, 20000, ['0.0.0.0/0'])] });
    assert.deepEqual(bad(checkSecurityGroups(d, tooNarrow)).map((f) => f.id), ['sg.sip.udp.5060']);
  });

  it('says when rules with prefix lists were not evaluated', () => {
    const fs = bad(checkSecurityGroups(desired(), facts({ rules: [rule('udp', 5060, 5060, ['0.0.0.0/0']), rule('udp', 10000, 20000, [], { prefixListIds: ['pl-1'] })] })));
    assert.equal(fs.length, 1);
    assert.match(fs[0]!.message, /prefix lists .* not evaluated/);
  });

  it('SSH open to every IPv4 address through 0.0.0.0/1 + 128.0.0.0/1 is flagged, and the fix revokes those two, not the admin\'s /32', () => {
    const rules = [...GOOD_RULES, rule('tcp', 22, 22, ['0.0.0.0/1']), rule('tcp', 0, 1024, ['128.0.0.0/1'])];
    const fs = bad(checkSecurityGroups(desired(), facts({ rules })));
    assert.deepEqual(fs.map((f) => [f.id, f.severity]), [['sg.ssh_world', 'error']]);
    const [ssh] = fs;
    assert.equal(ssh!.actual, 'sg-1 (pbx): TCP 22 from 0.0.0.0/1; sg-1 (pbx): TCP 0-1024 from 128.0.0.0/1');
    assert.match(ssh!.message, /together every IPv4 address/);
    assert.equal(
      ssh!.fix,
      'aws ec2 revoke-security-group-ingress --group-id sg-1 --protocol tcp --port 22 --cidr 0.0.0.0/1\n' +
        'aws ec2 revoke-security-group-ingress --group-id sg-1 --protocol tcp --port 0-1024 --cidr 128.0.0.0/1',
    );
    // Halves of the world that leave a gap are not the world.
    assert.deepEqual(bad(checkSecurityGroups(desired(), facts({ rules: [...GOOD_RULES, rule('tcp', 22, 22, ['0.0.0.0/1', '128.0.0.0/2'])] }))), []);
  });

  it('SSH or AMI open to every IPv6 address through ::/1 + 8000::/1, across two groups, is flagged', () => {
    const groups: SecurityGroupFacts[] = [
      { groupId: 'sg-1', ingress: [...GOOD_RULES, rule('tcp', 22, 22, [], { ipv6Ranges: ['::/1'] }), rule('tcp', 5038, 5038, [], { ipv6Ranges: ['::/1'] })] },
      { groupId: 'sg-2', ingress: [rule('-1', undefined, undefined, [], { ipv6Ranges: ['8000::/1'] })] },
    ];
    const fs = bad(checkSecurityGroups(desired(), facts({ groups })));
    assert.deepEqual(fs.map((f) => f.id).sort(), ['sg.ami_world', 'sg.ssh_world']);
    const ssh = fs.find((f) => f.id === 'sg.ssh_world')!;
    assert.equal(ssh.actual, 'sg-1: TCP 22 from ::/1; sg-2: all traffic from 8000::/1');
    assert.match(ssh.message, /together every IPv6 address/);
    assert.match(ssh.fix, /--group-id sg-2 --ip-permissions 'IpProtocol=-1,Ipv6Ranges=\[\{CidrIpv6=8000::\/1\}\]'/);
  });

  it('SIP and RTP opened to 0.0.0.0/1 + 128.0.0.0/1 count as open, even with the halves over different port ranges and groups', () => {
    const groups: SecurityGroupFacts[] = [
      { groupId: 'sg-1', ingress: [rule('udp', 5060, 5060, ['0.0.0.0/1', '128.0.0.0/1']), rule('udp', 10000, 20000, ['0.0.0.0/1'])] },
      { groupId: 'sg-2', ingress: [rule('udp', 10000, 14999, ['128.0.0.0/1']), rule('udp', 15000, 20000, ['128.0.0.0/1'])] },
    ];
    assert.deepEqual(bad(checkSecurityGroups(desired(), facts({ groups }))), []);
    // One port of one half missing: exactly that port is closed.
    groups[1]!.ingress[1] = rule('udp', 15001, 20000, ['128.0.0.0/1']);
    const [rtp] = bad(checkSecurityGroups(desired(), facts({ groups })));
    assert.equal(rtp!.id, 'sg.rtp');
    assert.equal(rtp!.actual, '15000 closed for 0.0.0.0/0');
  });

  it('a TCP rule over the RTP range does not open the UDP range', () => {
    const fs = bad(checkSecurityGroups(desired(), facts({ rules: [rule('udp', 5060, 5060, ['0.0.0.0/0']), rule('tcp', 10000, 20000, ['0.0.0.0/0']), rule('6', 10000, 20000, ['0.0.0.0/1', '128.0.0.0/1'])] })));
    assert.deepEqual(fs.map((f) => [f.id, f.actual]), [['sg.rtp', '10000-20000 closed for 0.0.0.0/0']]);
    assert.match(fs[0]!.fix, /--protocol udp --port 10000-20000 --cidr 0\.0\.0\.0\/0$/);
  });

  it('RTP must be open to the world even when allowed_networks narrows SIP, and the finding says why', () => {
    const d = desired({ allowedNetworks: ['198.51.100.0/24'] });
    const onlyAllowed = facts({ rules: [rule('udp', 5060, 5060, ['198.51.100.0/24']), rule('udp', 10000, 20000, ['198.51.100.0/24'])] });
    const fs = bad(checkSecurityGroups(d, onlyAllowed));
    assert.deepEqual(fs.map((f) => [f.id, f.severity]), [['sg.rtp', 'error']]);
    assert.equal(fs[0]!.expected, 'UDP 10000-20000 (RTP) open from 0.0.0.0/0');
    assert.match(fs[0]!.message, /open from network\.allowed_networks, but those say where phones register from, not where their media comes from/);
    assert.equal(fs[0]!.fix, 'aws ec2 authorize-security-group-ingress --group-id sg-1 --protocol udp --port 10000-20000 --cidr 0.0.0.0/0');
    // SIP from the allowed networks and RTP from anywhere: the documented setup, nothing to say.
    assert.deepEqual(bad(checkSecurityGroups(d, facts({ rules: [rule('udp', 5060, 5060, ['198.51.100.0/24']), rule('udp', 10000, 20000, ['0.0.0.0/0'])] }))), []);
  });

  it('SIP open to the world in halves despite allowed_networks is warned about', () => {
    const d = desired({ allowedNetworks: ['198.51.100.0/24'] });
    const fs = bad(checkSecurityGroups(d, facts({ rules: [rule('udp', 5060, 5060, ['0.0.0.0/1', '128.0.0.0/1']), rule('udp', 10000, 20000, ['0.0.0.0/0'])] })));
    assert.deepEqual(fs.map((f) => [f.id, f.severity]), [['sg.sip_world.udp.5060', 'warning']]);
  });

  it('checks nothing when the rules are unknown', () => {
    const f = facts();
    delete f.securityGroups;
    assert.deepEqual(checkSecurityGroups(desired(), f), []);
  });
});

describe('cloud checks: local_net', () => {
  it('matches the VPC CIDR blocks', () => {
    assert.deepEqual(bad(checkLocalNet(desired(), facts())), []);
    assert.deepEqual(bad(checkLocalNet(desired({ localNets: ['172.31.0.0/17', '172.31.128.0/17'] }), facts())), []);
  });

  it('reports a VPC block not covered and a local_net outside the VPC', () => {
    const fs = bad(checkLocalNet(desired(), facts({ vpc: ['10.0.0.0/16', '172.31.0.0/16'] })));
    assert.deepEqual(fs.map((f) => f.id), ['local_net.vpc.10.0.0.0/16']);
    assert.equal(fs[0]!.event, 'drift.local_net');
    assert.match(fs[0]!.fix, /add 10\.0\.0\.0\/16/);
    const other = bad(checkLocalNet(desired(), facts({ vpc: ['10.0.0.0/16'] })));
    assert.deepEqual(other.map((f) => f.id), ['local_net.vpc.10.0.0.0/16', 'local_net.extra.172.31.0.0/16']);
  });

  it('evaluateCloud lists errors first', () => {
    const fs = evaluateCloud(desired(), facts({ vpc: ['10.0.0.0/16'], rules: [rule('udp', 5060, 5060, ['0.0.0.0/0'])] }));
    const ranks = fs.map((f) => ({ error: 0, warning: 1, info: 2 })[f.severity]);
    assert.deepEqual(ranks, [...ranks].sort());
    assert.equal(fs[0]!.id, 'sg.rtp');
  });
});

describe('address coverage', () => {
  it('parses IPv4 and IPv6 networks, and refuses malformed ones', () => {
    assert.deepEqual(parseCidr('10.1.2.3/8'), { family: 4, start: 10n * 2n ** 24n, end: 11n * 2n ** 24n - 1n });
    assert.deepEqual(parseCidr('8000::/1'), { family: 6, start: 2n ** 127n, end: 2n ** 128n - 1n });
    assert.deepEqual(parseCidr('::ffff:192.0.2.1'), { family: 6, start: 0xffffc0000201n, end: 0xffffc0000201n });
    assert.equal(parseCidr('2001:db8::1/64')!.start, 0x20010db8n << 96n);
    for (const badText of ['10.0.0.0/33', '256.0.0.0/8', '1::2::3/64', '12345::/16', '::/129', '10.0.0.0/8/1', '1:2:3:4:5:6:7:8:9/128']) assert.equal(parseCidr(badText), undefined, badText);
  });

  it('decides coverage by the addresses let in, not by spelling', () => {
    const nets = (...xs: string[]) => xs.map((x) => parseCidr(x)!);
    assert.ok(covered(WORLD[4], nets('0.0.0.0/1', '128.0.0.0/1')));
    assert.ok(covered(WORLD[6], nets('::/1', '8000::/1')));
    assert.ok(!covered(WORLD[4], nets('0.0.0.0/1', '128.0.0.0/2', '::/0')));
    assert.deepEqual(uncovered(WORLD[4], nets('0.0.0.0/1', '128.0.0.0/2')), [{ family: 4, start: 3n * 2n ** 30n, end: 2n ** 32n - 1n }]);
  });
});

describe('EC2 failures: what to do about each', () => {
  const failure = (kind: Ec2ErrorKind, code: string, extra: Partial<Ec2ErrorInfo> = {}): Ec2ErrorInfo => ({ kind, code, message: 'm', action: 'DescribeAddresses', iamAction: 'ec2:DescribeAddresses', ...extra });

  it('says to grant the IAM action only for access denied; every other failure has its own fix', () => {
    const cases: Array<[Ec2ErrorInfo, RegExp]> = [
      [failure('access_denied', 'UnauthorizedOperation'), /^add ec2:DescribeAddresses on Resource "\*" to the instance role's policy/],
      [failure('throttled', 'RequestLimitExceeded'), /request rate of the account and region/],
      [failure('expired', 'ExpiredToken'), /fresh credentials for the next check/],
      [failure('expired', 'RequestExpired'), /^set the system clock right/],
      [failure('auth', 'AuthFailure'), /aws sts get-caller-identity/],
      [failure('credentials', 'NoInstanceRole'), /associate-iam-instance-profile/],
      [failure('credentials', 'imds_timeout'), /not the role's credentials/],
      [failure('timeout', 'RequestTimeout', { endpoint: 'https://ec2.eu-west-1.amazonaws.com' }), /^the EC2 endpoint \(https:\/\/ec2\.eu-west-1\.amazonaws\.com\) took the request and did not answer/],
      [failure('unreachable', 'ECONNREFUSED', { endpoint: 'https://ec2.eu-west-1.amazonaws.com' }), /HTTPS \(TCP 443\) to https:\/\/ec2\.eu-west-1\.amazonaws\.com/],
      [failure('worker', 'worker_timeout'), /starved of CPU or memory/],
    ];
    const fixes = new Set<string>();
    for (const [p, expected] of cases) {
      const f: CloudFacts = { ...facts({ eips: null }), problems: [p] };
      const fix = ec2FailureFix(p);
      fixes.add(fix);
      assert.match(fix, expected, p.code);
      assert.equal(/ec2:DescribeAddresses/.test(fix), p.kind === 'access_denied', p.code);
      // The Elastic IP check (auto) and the resolve stage name the same fix.
      assert.ok(checkElasticIp(desired({}, { configured: 'auto' }), f)[0]!.fix.startsWith(fix), p.code);
      const resolved = elasticIpFor(f);
      assert.ok('problem' in resolved && resolved.problem.includes(fix), p.code);
      assert.equal(problemFindings(f)[0]!.fix, fix, p.code);
    }
    assert.equal(fixes.size, cases.length, 'no two failures share a fix text');
  });

  it('one cloud.error finding per run for every failed call, access denied one per action', () => {
    const f: CloudFacts = {
      ...facts({ eips: null }),
      problems: [failure('timeout', 'RequestTimeout'), { ...failure('timeout', 'RequestTimeout'), action: 'DescribeSecurityGroups', iamAction: 'ec2:DescribeSecurityGroups' }, { ...failure('access_denied', 'UnauthorizedOperation'), action: 'DescribeInstances', iamAction: 'ec2:DescribeInstances' }],
    };
    assert.deepEqual(problemFindings(f).map((x) => [x.event, x.id]), [['cloud.access_denied', 'denied.DescribeInstances'], ['cloud.error', 'ec2']]);
  });
});

describe('EC2 worker timeouts', () => {
  it('the kill timeout is derived from the retry plan: start-up, two calls in a row at their worst, and the exit margin', () => {
    // 3 attempts of 3 s, pauses capped at 0.5 s and 1 s.
    assert.equal(worstCallMs(DEFAULT_EC2_RETRY_PLAN), 10_500);
    assert.equal(workerKillTimeoutMs(DEFAULT_EC2_RETRY_PLAN), 8000 + 2 * 10_500 + 2000);
    // The old defaults (5 attempts of 5 s, pauses up to 8 s) would need 80 s, not 30.
    assert.equal(workerKillTimeoutMs({ maxAttempts: 5, requestTimeoutMs: 5000, baseDelayMs: 500, maxDelayMs: 8000 }), 8000 + 2 * 32_500 + 2000);
  });
});

describe('DriftReporter', () => {
  const finding = (over: Partial<Finding> = {}): Finding => ({
    id: 'eip',
    severity: 'error',
    event: 'drift.eip',
    message: 'm',
    expected: '203.0.113.10',
    actual: '198.51.100.7',
    fix: 'f',
    ...over,
  });
  let t = 0;
  const reporter = () => new DriftReporter({ reminderMs: 60 * 60_000, now: () => t });
  beforeEach(() => {
    t = 1_000_000;
  });

  it('logs a drift when it appears, not again while it persists, then as a reminder', () => {
    const r = reporter();
    assert.deepEqual(r.observe([finding()]).log.map((x) => x.reason), ['new']);
    t += 10 * 60_000;
    assert.deepEqual(r.observe([finding()]).log, []);
    t += 49 * 60_000;
    assert.deepEqual(r.observe([finding()]).log, []);
    t += 60_000;
    const reminder = r.observe([finding()]).log;
    assert.deepEqual(reminder.map((x) => [x.reason, x.since]), [['reminder', 1_000_000]]);
    t += 30 * 60_000;
    assert.deepEqual(r.observe([finding()]).log, []);
  });

  it('logs again when the drift changes, and once when it is resolved', () => {
    const r = reporter();
    r.observe([finding()]);
    t += 60_000;
    assert.deepEqual(r.observe([finding({ actual: '192.0.2.1' })]).log.map((x) => x.reason), ['changed']);
    t += 60_000;
    const out = r.observe([]);
    assert.deepEqual(out.log, []);
    assert.deepEqual(out.resolved.map((x) => x.finding.actual), ['192.0.2.1']);
    assert.deepEqual(r.observe([]).resolved, []);
    assert.deepEqual(r.observe([finding()]).log.map((x) => x.reason), ['new']);
  });

  it('keeps since when a drift changes, and lists the open drifts with since and the last reminder', () => {
    const r = reporter();
    r.observe([finding()]);
    t += 30 * 60_000;
    const changed = r.observe([finding({ actual: '192.0.2.1' })]).log;
    assert.deepEqual(changed.map((x) => [x.reason, x.since]), [['changed', 1_000_000]]);
    assert.deepEqual(r.openDrifts(), [
      {
        event: 'drift.eip',
        check: 'eip',
        severity: 'error',
        message: 'm',
        expected: '203.0.113.10',
        actual: '192.0.2.1',
        fix: 'f',
        since: new Date(1_000_000).toISOString(),
        lastReminder: new Date(1_000_000 + 30 * 60_000).toISOString(),
      },
    ]);
  });

  it('ignores info findings, and does not call a drift resolved when its check did not run', () => {
    const r = reporter();
    assert.deepEqual(r.observe([finding({ severity: 'info' })]).log, []);
    r.observe([finding({ id: 'sg.rtp', event: 'drift.security_group' })]);
    const out = r.observe([], (id) => !id.startsWith('sg'));
    assert.deepEqual(out.resolved, []);
    assert.equal(r.open.length, 1);
  });
});
