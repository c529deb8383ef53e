/**
 * The cloud checks as pure functions: facts about the instance (IMDS, EC2 Describe* calls) and
 * what the config repo wants (external address, local_net, SIP transports, RTP range, AMI port)
 * in; findings out. No I/O, no clock: index.ts gathers the facts and logs.
 *
 * Findings use `expected` for what pbx-agent's configuration implies (the address Asterisk
 * advertises, the rules phones need) and `actual` for what AWS reports.
 */
import type { DesiredState, Protocol } from '../model.js';
import type { Ec2Action, Ec2ErrorInfo, ElasticAddress, IngressRule, SecurityGroupFacts } from './ec2-protocol.js';
import { covered, parseCidr, sizeOf, WORLD, type AddressRange, type Family } from './address-space.js';
import type { InstanceIdentity } from './imds.js';

export type Severity = 'error' | 'warning' | 'info';
export type FindingEvent = 'drift.eip' | 'drift.security_group' | 'drift.local_net' | 'cloud.access_denied' | 'cloud.error';

export interface Finding {
  /** Stable identity of what is checked, e.g. `eip`, `sg.rtp`, `local_net.vpc.10.0.0.0/16`. */
  id: string;
  severity: Severity;
  event: FindingEvent;
  message: string;
  expected: string;
  actual: string;
  /** What to do about it; empty for info findings. */
  fix: string;
  /**
   * ISO time of the run that made this finding, when the current run could not make the check
   * (EC2 did not answer) and the last known finding stands.
   */
  lastChecked?: string;
}

/** Everything known about the instance. A list left undefined could not be had (see problems). */
export interface CloudFacts {
  instance: InstanceIdentity;
  elasticIps?: ElasticAddress[];
  securityGroups?: SecurityGroupFacts[];
  /** EC2 calls that failed (access denied, throttled, no credentials, ...). */
  problems: Ec2ErrorInfo[];
}

/** What the config repo and the agent's settings want, as far as the cloud checks care. */
export interface CloudDesired {
  externalAddress: {
    /** network.external_address as written: "auto" or an IPv4. */
    configured: string;
    /** The address Asterisk advertises (the applied/rendered files); undefined if unknown. */
    live?: string;
  };
  localNets: string[];
  transports: Array<{ protocol: Protocol; port: number }>;
  /** network.allowed_networks: where phones may register from; undefined = anywhere. */
  allowedNetworks?: string[];
  rtp: { portStart: number; portEnd: number };
  /** settings asterisk.ami.port (5038). */
  amiPort: number;
}

export type EipPolicy = 'alert' | 'adopt';

/** What to do about the external address; the daemon acts on `adopt`. */
export type EipDecision =
  | { action: 'none' }
  /** Drift, and nothing is changed: logged, last-known-good stays. */
  | { action: 'alert'; reason: string }
  /**
   * Re-render with `address` as external_media_address/external_signaling_address and reload.
   * `overridesConfig` is true when pbx.yaml names another address (eip_policy: adopt); false
   * for external_address: auto, which follows the Elastic IP by definition.
   */
  | { action: 'adopt'; address: string; previous?: string; overridesConfig: boolean; reason: string };

// ---------------------------------------------------------------------------------------------
// Building the inputs

/** The cloud view of a desired state (before resolve: external_address may be "auto"). */
export function cloudDesiredFrom(state: DesiredState, options: { amiPort: number; liveExternalAddress?: string }): CloudDesired {
  const d: CloudDesired = {
    externalAddress: { configured: state.network.externalAddress },
    localNets: [...state.network.localNets],
    transports: state.network.transports.map((t) => ({ protocol: t.protocol, port: t.port })),
    rtp: { portStart: state.rtp.portStart, portEnd: state.rtp.portEnd },
    amiPort: options.amiPort,
  };
  if (options.liveExternalAddress !== undefined) d.externalAddress.live = options.liveExternalAddress;
  if (state.network.allowedNetworks !== undefined) d.allowedNetworks = [...state.network.allowedNetworks];
  return d;
}

// ---------------------------------------------------------------------------------------------
// Port arithmetic

/** Parts of `[start, end]` not covered by any of `covers`, as sorted disjoint intervals. */
function uncoveredIntervals(start: number, end: number, covers: Array<[number, number]>): Array<[number, number]> {
  const sorted = covers.filter(([a, b]) => b >= start && a <= end).sort((x, y) => x[0] - y[0]);
  const gaps: Array<[number, number]> = [];
  let next = start;
  for (const [a, b] of sorted) {
    if (a > next) gaps.push([next, Math.min(a - 1, end)]);
    next = Math.max(next, b + 1);
    if (next > end) break;
  }
  if (next <= end) gaps.push([next, end]);
  return gaps;
}

// ---------------------------------------------------------------------------------------------
// Elastic IP

const ec2Problem = (facts: CloudFacts, action: Ec2Action) => facts.problems.find((p) => p.action === action);

/** What went wrong with an EC2 call, in words. */
export function ec2FailureText(p: Ec2ErrorInfo): string {
  const status = p.httpStatus ? `, HTTP ${p.httpStatus}` : '';
  switch (p.kind) {
    case 'access_denied':
      return `the instance role may not call ${p.iamAction} (${p.code})`;
    case 'throttled':
      return `${p.iamAction} was still throttled after backing off (${p.code})`;
    case 'credentials':
      return `no AWS credentials were found for ${p.iamAction} (${p.code}): ${p.message}`;
    case 'expired':
      return p.code === 'RequestExpired'
        ? `AWS refused ${p.iamAction} as expired (RequestExpired): the request's time stamp is more than 15 minutes off AWS's clock`
        : `AWS refused ${p.iamAction}: the session credentials had expired when it arrived (${p.code})`;
    case 'auth':
      return `AWS refused the credentials for ${p.iamAction} (${p.code}${status})`;
    case 'timeout':
      return `${p.iamAction} got no answer in time (${p.code}): ${p.message}`;
    case 'unreachable':
      return `${p.iamAction} could not reach ${p.endpoint ?? 'the EC2 API'} (${p.code})`;
    case 'worker':
      return `the EC2 worker process failed (${p.code}): ${p.message}`;
    default:
      return `${p.iamAction} failed (${p.code}${status}): ${p.message}`;
  }
}

/** What to do about a failed EC2 call: one text per kind of failure, never a guess. */
export function ec2FailureFix(p: Ec2ErrorInfo): string {
  switch (p.kind) {
    case 'access_denied':
      return `add ${p.iamAction} on Resource "*" to the instance role's policy (docs/aws-setup.md)`;
    case 'throttled':
      // EC2 throttles per account and region, whoever calls (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html).
      return 'nothing to change in pbx-agent: the EC2 request rate of the account and region is used up by all its callers together; the next check tries again. If it persists, find the busy callers in CloudTrail, or run the checks less often (schedule.cloud)';
    case 'credentials':
      return p.code.startsWith('imds_')
        ? 'instance metadata answered the identity but not the role\'s credentials (see the message); the next check tries again. If it persists, check IMDS (docs/aws-setup.md, 4) and the instance profile'
        : 'attach an instance profile whose role has the policy in docs/aws-setup.md: aws ec2 associate-iam-instance-profile --instance-id <instance-id> --iam-instance-profile Name=pbx-agent';
    case 'expired':
      return p.code === 'RequestExpired'
        ? "set the system clock right: timedatectl should say 'System clock synchronized: yes' (chrony, with the Amazon Time Sync Service at 169.254.169.123)"
        : "nothing if it happens once: the agent fetches fresh credentials for the next check. If it repeats, the system clock is behind (timedatectl, chrony), or stale keys are set in the agent's environment (AWS_SESSION_TOKEN)";
    case 'auth':
      return "check which identity the host uses (aws sts get-caller-identity on the instance): the instance profile's role may have been deleted or replaced, or keys set in the agent's environment are wrong";
    case 'timeout':
      return `the EC2 endpoint${p.endpoint ? ` (${p.endpoint})` : ''} took the request and did not answer: check an HTTPS proxy or VPC interface endpoint in between, cloud.ec2_endpoint if set, and the AWS Health Dashboard for EC2 in this region; the next check tries again`;
    case 'unreachable':
      return `check that the instance can open HTTPS (TCP 443) to ${p.endpoint ?? 'the EC2 API'}: security group egress, network ACLs, a route to an internet or NAT gateway (or a VPC interface endpoint for com.amazonaws.<region>.ec2), DNS; and cloud.ec2_endpoint if set`;
    case 'worker':
      return p.code === 'worker_timeout'
        ? 'the worker was killed although its own deadline comes first: the host is starved of CPU or memory (a t3 out of CPU credits, swapping); see the journal'
        : 'see the journal for the worker\'s error output; reinstalling pbx-agent restores a missing or damaged worker file';
    default:
      return 'see the message; the next check tries again';
  }
}

/** The Elastic IP of this instance: the one on its primary private address if there are several. */
export function chooseElasticIp(
  facts: CloudFacts,
): { address: ElasticAddress } | { none: true } | { ambiguous: ElasticAddress[] } | { unknown: string; fix: string } {
  const eips = facts.elasticIps;
  if (eips === undefined) {
    const p = ec2Problem(facts, 'DescribeAddresses');
    return p ? { unknown: ec2FailureText(p), fix: ec2FailureFix(p) } : { unknown: 'the EC2 API was not asked', fix: 'run the check again' };
  }
  if (eips.length === 0) return { none: true };
  if (eips.length === 1) return { address: eips[0]! };
  const { localIpv4, publicIpv4 } = facts.instance;
  const primary = eips.find((a) => localIpv4 !== undefined && a.privateIpAddress === localIpv4) ?? eips.find((a) => a.publicIp === publicIpv4);
  return primary ? { address: primary } : { ambiguous: eips };
}

/**
 * For HostFacts.elasticIp (external_address: auto): the Elastic IP, or why it cannot be used.
 * An ephemeral public IP is never offered: it changes on stop/start and the phones lose audio.
 */
export function elasticIpFor(facts: CloudFacts | { unavailable: string }): { address: string } | { problem: string } {
  if ('unavailable' in facts) return { problem: facts.unavailable };
  const chosen = chooseElasticIp(facts);
  const id = facts.instance.instanceId;
  if ('address' in chosen) return { address: chosen.address.publicIp };
  if ('unknown' in chosen) {
    return { problem: `the Elastic IP of ${id} cannot be confirmed: ${chosen.unknown}. Fix: ${chosen.fix}; or set external_address explicitly` };
  }
  if ('ambiguous' in chosen) {
    return { problem: `${id} has several Elastic IPs (${chosen.ambiguous.map((a) => a.publicIp).join(', ')}) and none is on its primary private address; set external_address explicitly` };
  }
  const p = facts.instance.publicIpv4;
  return {
    problem: `no Elastic IP is associated with ${id}${p ? `; its public address ${p} is ephemeral (it changes on every stop/start) and is not used` : ' and it has no public IPv4 address'}; associate an Elastic IP`,
  };
}

function associateFix(instanceId: string, address?: string): string {
  return address
    ? `associate ${address} with this instance: aws ec2 associate-address --instance-id ${instanceId} --allocation-id <eipalloc-id of ${address}>`
    : `allocate and associate an Elastic IP: aws ec2 allocate-address --domain vpc, then aws ec2 associate-address --instance-id ${instanceId} --allocation-id <eipalloc-id>`;
}

export function checkElasticIp(desired: CloudDesired, facts: CloudFacts): Finding[] {
  const { configured, live } = desired.externalAddress;
  const auto = configured === 'auto';
  const advertised = live ?? (auto ? undefined : configured);
  const id = facts.instance.instanceId;
  const pub = facts.instance.publicIpv4;
  const chosen = chooseElasticIp(facts);
  const f = (severity: Severity, message: string, expected: string, actual: string, fix: string, fid = 'eip'): Finding => ({
    id: fid,
    severity,
    event: 'drift.eip',
    message,
    expected,
    actual,
    fix,
  });

  if ('unknown' in chosen) {
    if (auto) {
      return [f('error', `external_address is auto but the Elastic IP of ${id} cannot be confirmed: ${chosen.unknown}`, `the Elastic IP of ${id}`, 'unknown', `${chosen.fix}; or set network.external_address to the Elastic IP`)];
    }
    if (pub === undefined) {
      return [f('error', `${id} has no public IPv4 address, so phones cannot reach ${configured}`, `${configured} on ${id}`, 'no public IPv4 address', associateFix(id, configured))];
    }
    if (pub !== configured) {
      return [f('error', `external_address ${configured} is not the public address of ${id} (${pub}): phones are told to send media where nothing listens`, configured, `public IPv4 ${pub}`, `set network.external_address to the instance's Elastic IP, or ${associateFix(id, configured)}`)];
    }
    return [f('warning', `external_address ${configured} is the public address of ${id}, but whether it is an Elastic IP cannot be confirmed: ${chosen.unknown}`, `Elastic IP ${configured}`, `public IPv4 ${pub} (Elastic IP unknown)`, chosen.fix)];
  }

  if ('none' in chosen) {
    const expected = auto ? `an Elastic IP associated with ${id}` : `Elastic IP ${configured} associated with ${id}`;
    if (pub === undefined) {
      return [f('error', `no Elastic IP is associated with ${id} and it has no public IPv4 address: phones cannot reach it`, expected, 'no Elastic IP, no public IPv4', associateFix(id, auto ? undefined : configured))];
    }
    const what = auto
      ? `external_address is auto but no Elastic IP is associated with ${id}; its public address ${pub} is ephemeral and is not rendered (the last-known-good configuration stays)`
      : `no Elastic IP is associated with ${id}: its public address ${pub} is ephemeral and changes on every stop/start, and phones then lose audio` +
        (pub !== configured ? `; external_address ${configured} is not even that address` : '');
    // An explicit address equal to the ephemeral one is not an Elastic IP anybody owns.
    const fix =
      auto || pub === configured
        ? `${associateFix(id)}${auto ? '' : ', then set network.external_address to it (or auto)'}`
        : `${associateFix(id, configured)} if it is your Elastic IP; otherwise ${associateFix(id)} and set network.external_address to it (or auto)`;
    return [f('error', what, expected, `no Elastic IP; ephemeral public IPv4 ${pub}`, fix)];
  }

  if ('ambiguous' in chosen) {
    const list = chosen.ambiguous.map((a) => a.publicIp);
    if (!auto && list.includes(configured)) {
      return [f('info', `external_address ${configured} is one of the Elastic IPs of ${id} (${list.join(', ')})`, configured, list.join(', '), '')];
    }
    return [f('error', `${id} has several Elastic IPs (${list.join(', ')}) and none is on its primary private address`, auto ? 'one Elastic IP on the primary private address' : configured, list.join(', '), 'set network.external_address to the Elastic IP phones should use')];
  }

  const eip = chosen.address;
  const eipText = `Elastic IP ${eip.publicIp}${eip.allocationId ? ` (${eip.allocationId})` : ''}`;
  if (advertised === undefined) {
    // auto, nothing rendered yet: the next render uses the Elastic IP.
    return [f('info', `external_address auto resolves to the ${eipText} of ${id}`, `the Elastic IP of ${id}`, eipText, '')];
  }
  if (advertised !== eip.publicIp) {
    if (auto) {
      return [f('error', `Asterisk advertises ${advertised} but the Elastic IP of ${id} is now ${eip.publicIp} (external_address: auto)`, advertised, eipText, `re-render: the next reconcile (or pbx-agent apply) resolves auto to ${eip.publicIp}`)];
    }
    if (configured !== eip.publicIp) {
      return [
        f(
          'error',
          `external_address ${configured} is not the Elastic IP of ${id} (${eip.publicIp}): phones are told to send media to an address that does not reach this instance (one-way audio)`,
          configured,
          eipText,
          `set network.external_address: ${eip.publicIp} (or auto) in pbx.yaml and push, or ${associateFix(id, configured)}; with cloud.eip_policy: adopt the agent renders ${eip.publicIp} itself`,
        ),
      ];
    }
    return [f('error', `Asterisk still advertises ${advertised}; the Elastic IP of ${id} is ${eip.publicIp}, as pbx.yaml says`, advertised, eipText, 'run a reconcile (pbx-agent apply) so that Asterisk gets the rendered address')];
  }
  if (!auto && configured !== eip.publicIp) {
    return [f('warning', `Asterisk advertises the ${eipText} (adopted), but pbx.yaml still says external_address: ${configured}`, configured, eipText, `set network.external_address: ${eip.publicIp} (or auto) in pbx.yaml`)];
  }
  return [f('info', `Asterisk advertises ${advertised}, the ${eipText} of ${id}`, advertised, eipText, '')];
}

/** alert or adopt, from the facts and cloud.eip_policy. Never adopts an ephemeral address. */
export function eipDecision(desired: CloudDesired, facts: CloudFacts, policy: EipPolicy): EipDecision {
  const chosen = chooseElasticIp(facts);
  const { configured, live } = desired.externalAddress;
  const auto = configured === 'auto';
  const advertised = live ?? (auto ? undefined : configured);
  if (!('address' in chosen)) {
    const errors = checkElasticIp(desired, facts).filter((x) => x.severity === 'error');
    return errors.length ? { action: 'alert', reason: errors[0]!.message } : { action: 'none' };
  }
  const eip = chosen.address.publicIp;
  if (advertised === eip) return { action: 'none' };
  const base = advertised !== undefined ? { previous: advertised } : {};
  if (auto) return { action: 'adopt', address: eip, ...base, overridesConfig: false, reason: 'external_address auto follows the Elastic IP' };
  if (policy === 'adopt') {
    return { action: 'adopt', address: eip, ...base, overridesConfig: true, reason: `cloud.eip_policy is adopt: the Elastic IP ${eip} replaces external_address ${configured}` };
  }
  return { action: 'alert', reason: `external_address ${configured} is not the Elastic IP ${eip} (cloud.eip_policy: alert)` };
}

// ---------------------------------------------------------------------------------------------
// local_net

export function checkLocalNet(desired: CloudDesired, facts: CloudFacts): Finding[] {
  const blocks = facts.instance.vpcCidrBlocks;
  const localText = `[${desired.localNets.join(', ')}]`;
  if (blocks.length === 0) {
    return [{ id: 'local_net', severity: 'info', event: 'drift.local_net', message: 'IMDS did not give the VPC CIDR blocks; local_net not compared', expected: localText, actual: 'unknown', fix: '' }];
  }
  const ipv4 = (c: string) => [c, parseCidr(c)] as const;
  const isIpv4 = (x: readonly [string, AddressRange | undefined]): x is readonly [string, AddressRange] => x[1]?.family === 4;
  const locals = desired.localNets.map(ipv4).filter(isIpv4);
  const vpcs = blocks.map(ipv4).filter(isIpv4);
  const findings: Finding[] = [];
  for (const [cidr, net] of vpcs) {
    if (!covered(net, locals.map(([, l]) => l))) {
      findings.push({
        id: `local_net.vpc.${cidr}`,
        severity: 'warning',
        event: 'drift.local_net',
        message: `local_net ${localText} does not cover the VPC block ${cidr}: Asterisk treats hosts in the VPC as outside the NAT and sends them the public address`,
        expected: `local_net covering ${cidr}`,
        actual: `VPC CIDR blocks [${blocks.join(', ')}]`,
        fix: `add ${cidr} to network.local_net in pbx.yaml`,
      });
    }
  }
  for (const [cidr, net] of locals) {
    if (!vpcs.some(([, v]) => v.start <= net.end && net.start <= v.end)) {
      findings.push({
        id: `local_net.extra.${cidr}`,
        severity: 'warning',
        event: 'drift.local_net',
        message: `local_net ${cidr} is not part of this instance's VPC (${blocks.join(', ')}): Asterisk sends its private address to peers there`,
        expected: `local_net within [${blocks.join(', ')}]`,
        actual: `local_net ${cidr}`,
        fix: `remove ${cidr} from network.local_net unless it is reached privately (VPN, peered VPC)`,
      });
    }
  }
  if (findings.length === 0) {
    findings.push({ id: 'local_net', severity: 'info', event: 'drift.local_net', message: `local_net ${localText} matches the VPC CIDR blocks [${blocks.join(', ')}]`, expected: localText, actual: `[${blocks.join(', ')}]`, fix: '' });
  }
  return findings;
}

// ---------------------------------------------------------------------------------------------
// Security groups

type L4 = 'tcp' | 'udp';

/** One source of one ingress rule: a protocol, a port range, and the addresses it lets in. */
interface Opening {
  groupId: string;
  groupName?: string;
  protocol: L4 | 'all';
  from: number;
  to: number;
  /** The CIDR as EC2 reports it. */
  source: string;
  addresses: AddressRange;
}

function ruleProtocol(p: string): L4 | 'all' | undefined {
  const v = p.toLowerCase();
  if (v === '-1' || v === 'all') return 'all';
  if (v === 'tcp' || v === '6') return 'tcp';
  if (v === 'udp' || v === '17') return 'udp';
  return undefined;
}

function openingsOf(groups: SecurityGroupFacts[]): { openings: Opening[]; unevaluated: Array<{ rule: IngressRule; group: SecurityGroupFacts }> } {
  const openings: Opening[] = [];
  const unevaluated: Array<{ rule: IngressRule; group: SecurityGroupFacts }> = [];
  for (const g of groups) {
    for (const rule of g.ingress) {
      const protocol = ruleProtocol(rule.protocol);
      if (!protocol) continue;
      const allPorts = protocol === 'all' || rule.fromPort === undefined || rule.fromPort < 0;
      const from = allPorts ? 0 : rule.fromPort!;
      const to = allPorts ? 65535 : (rule.toPort ?? rule.fromPort!);
      const base = { groupId: g.groupId, protocol, from, to, ...(g.groupName ? { groupName: g.groupName } : {}) };
      for (const source of [...rule.ipv4Ranges, ...rule.ipv6Ranges]) {
        const addresses = parseCidr(source);
        if (addresses) openings.push({ ...base, source, addresses });
      }
      if (rule.prefixListIds.length > 0 || rule.sourceGroupIds.length > 0) unevaluated.push({ rule, group: g });
    }
  }
  return { openings, unevaluated };
}

/** A rule of `protocol` lets it through; an all-traffic rule lets everything through, but a TCP rule never lets UDP through. */
const carries = (o: Opening, protocol: L4) => o.protocol === 'all' || o.protocol === protocol;
const matches = (o: Opening, protocol: L4, port: number) => carries(o, protocol) && o.from <= port && port <= o.to;
const groupLabel = (g: { groupId: string; groupName?: string }) => (g.groupName ? `${g.groupId} (${g.groupName})` : g.groupId);
const range = (a: number, b: number) => (a === b ? `${a}` : `${a}-${b}`);

function describeOpening(o: Opening): string {
  const what = o.protocol === 'all' ? 'all traffic' : `${o.protocol.toUpperCase()} ${range(o.from, o.to)}`;
  return `${groupLabel(o)}: ${what} from ${o.source}`;
}

/** The rule as aws-cli arguments after --group-id: the simple form for IPv4, --ip-permissions for IPv6. */
function ruleArgs(protocol: L4 | 'all', from: number, to: number, source: string, ipv6: boolean): string {
  if (ipv6) {
    const ports = protocol === 'all' ? 'IpProtocol=-1' : `IpProtocol=${protocol},FromPort=${from},ToPort=${to}`;
    return `--ip-permissions '${ports},Ipv6Ranges=[{CidrIpv6=${source}}]'`;
  }
  return protocol === 'all' ? `--protocol -1 --cidr ${source}` : `--protocol ${protocol} --port ${range(from, to)} --cidr ${source}`;
}

const revoke = (o: Opening) => `aws ec2 revoke-security-group-ingress --group-id ${o.groupId} ${ruleArgs(o.protocol, o.from, o.to, o.source, o.addresses.family === 6)}`;

/**
 * The ports of `[from, to]` at which the rules for `protocol` do not let in every address of
 * `sources`. Decided by coverage: at each port, the union of the address ranges of every rule
 * open there (across all groups) must contain the source network.
 */
function closedPorts(openings: Opening[], protocol: L4, from: number, to: number, sources: AddressRange): Array<[number, number]> {
  const relevant = openings.filter((o) => carries(o, protocol) && o.addresses.family === sources.family && o.to >= from && o.from <= to);
  // Between two consecutive cuts the same rules apply at every port.
  const cuts = new Set([from, to + 1]);
  for (const o of relevant) for (const c of [o.from, o.to + 1]) if (c > from && c <= to) cuts.add(c);
  const sorted = [...cuts].sort((a, b) => a - b);
  const gaps: Array<[number, number]> = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const a = sorted[i]!;
    const b = sorted[i + 1]! - 1;
    if (covered(sources, relevant.filter((o) => o.from <= a && b <= o.to).map((o) => o.addresses))) continue;
    const prev = gaps.at(-1);
    if (prev && prev[1] === a - 1) prev[1] = b;
    else gaps.push([a, b]);
  }
  return gaps;
}

/**
 * The rules that together open `protocol`/`port` to every IPv4 or every IPv6 address, or none.
 * Rules far narrower than those that make the world (a /32 for one admin) are left out: they
 * are not the problem and the fix must not revoke them.
 */
function worldOpenings(openings: Opening[], protocol: L4, port: number): Opening[] {
  const out: Opening[] = [];
  for (const family of [4, 6] as Family[]) {
    const here = openings.filter((o) => o.addresses.family === family && matches(o, protocol, port));
    if (!covered(WORLD[family], here.map((o) => o.addresses))) continue;
    // A minimal cover, dropping the smallest rules first; then every rule at least as wide as its narrowest member.
    const cover = [...here].sort((a, b) => (sizeOf(a.addresses) < sizeOf(b.addresses) ? -1 : sizeOf(a.addresses) > sizeOf(b.addresses) ? 1 : 0));
    for (let i = 0; i < cover.length; ) {
      const rest = cover.filter((_, j) => j !== i);
      if (covered(WORLD[family], rest.map((o) => o.addresses))) cover.splice(i, 1);
      else i++;
    }
    const narrowest = cover.reduce((m, o) => (sizeOf(o.addresses) < m ? sizeOf(o.addresses) : m), sizeOf(WORLD[family]));
    out.push(...here.filter((o) => sizeOf(o.addresses) >= narrowest));
  }
  return out;
}

function worldText(wide: Opening[]): string {
  const listed = wide.map(describeOpening).join('; ');
  const split = [4, 6].filter((f) => wide.filter((o) => o.addresses.family === f).length > 1);
  return split.length ? `${listed} (together every ${split.map((f) => `IPv${f}`).join(' and every ')} address)` : listed;
}

interface Need {
  id: string;
  label: string;
  protocol: L4;
  from: number;
  to: number;
  /** Source networks that must be let in. */
  sources: string[];
}

/**
 * What must be open, and from where.
 *
 * SIP: from network.allowed_networks when set (where phones register from), else from anywhere.
 *
 * RTP: from anywhere (0.0.0.0/0), whatever allowed_networks says. With rtp_symmetric (and ICE),
 * Asterisk sends media back to the address the phone's media comes from, and that is the
 * public address its carrier's NAT picks at that moment: on 4G/5G carrier-grade NAT it is not
 * predictable, may differ from the address the SIP traffic came from (RFC 4787 section 4.1 allows
 * "arbitrary" address pooling), and changes on a hand-over between Wi-Fi and mobile data. A
 * security group that drops the first RTP packets gives one-way or no audio. Open RTP costs
 * little: Asterisk listens only on the ports of calls in progress, and strictrtp (on by default,
 * res_rtp_asterisk.c DEFAULT_STRICT_RTP in 20.6.0) drops packets that do not come from the
 * source it locked on to. allowed_networks therefore narrows SIP only (docs/aws-setup.md, 3).
 */
function needs(desired: CloudDesired): Need[] {
  const sipSources = desired.allowedNetworks ?? ['0.0.0.0/0'];
  const out: Need[] = [];
  for (const t of desired.transports) {
    const protocol: L4 = t.protocol === 'udp' ? 'udp' : 'tcp';
    out.push({ id: `sg.sip.${t.protocol}.${t.port}`, label: `SIP over ${t.protocol.toUpperCase()}`, protocol, from: t.port, to: t.port, sources: sipSources });
  }
  out.push({ id: 'sg.rtp', label: 'RTP', protocol: 'udp', from: desired.rtp.portStart, to: desired.rtp.portEnd, sources: ['0.0.0.0/0'] });
  return out;
}

export function checkSecurityGroups(desired: CloudDesired, facts: CloudFacts): Finding[] {
  const groups = facts.securityGroups;
  if (groups === undefined) return [];
  const { openings, unevaluated } = openingsOf(groups);
  const firstGroup = groups[0]?.groupId ?? '<sg-id>';
  const groupsText = groups.map(groupLabel).join(', ') || 'none';
  const findings: Finding[] = [];

  for (const need of needs(desired)) {
    const what = `${need.protocol.toUpperCase()} ${range(need.from, need.to)} (${need.label})`;
    const closed: string[] = [];
    const fixes: string[] = [];
    for (const source of need.sources) {
      const net = parseCidr(source);
      if (!net) continue;
      const gaps = closedPorts(openings, need.protocol, need.from, need.to, net);
      if (gaps.length > 0) {
        closed.push(`${gaps.map(([a, b]) => range(a, b)).join(', ')} closed for ${source}`);
        for (const [a, b] of gaps) fixes.push(`aws ec2 authorize-security-group-ingress --group-id ${firstGroup} ${ruleArgs(need.protocol, a, b, source, net.family === 6)}`);
      }
    }
    if (closed.length > 0) {
      const skipped = unevaluated.filter(({ rule }) => {
        const p = ruleProtocol(rule.protocol);
        return p === 'all' || p === need.protocol;
      });
      const note = skipped.length
        ? ` (rules with prefix lists or source security groups in ${[...new Set(skipped.map(({ group }) => group.groupId))].join(', ')} were not evaluated)`
        : '';
      // RTP open from exactly the SIP networks: say why that is not enough.
      const rtpOnlyAllowed =
        need.id === 'sg.rtp' &&
        desired.allowedNetworks !== undefined &&
        desired.allowedNetworks.every((n) => {
          const net = parseCidr(n);
          return net !== undefined && closedPorts(openings, 'udp', need.from, need.to, net).length === 0;
        });
      const why =
        need.id !== 'sg.rtp'
          ? ': phones cannot reach this transport'
          : rtpOnlyAllowed
            ? ': it is open from network.allowed_networks, but those say where phones register from, not where their media comes from (the address their carrier NAT picks); calls connect and audio is lost one or both ways'
            : ': calls connect but audio is lost one or both ways';
      findings.push({
        id: need.id,
        severity: 'error',
        event: 'drift.security_group',
        message: `${what} is not open in the security groups of ${facts.instance.instanceId} (${groupsText}): ${closed.join('; ')}${why}${note}`,
        expected: `${what} open from ${need.sources.join(', ')}`,
        actual: closed.join('; '),
        fix: fixes.join('\n'),
      });
    }
  }

  // SIP open to the world although the contract lists where phones may register from.
  if (desired.allowedNetworks !== undefined) {
    for (const t of desired.transports) {
      const protocol: L4 = t.protocol === 'udp' ? 'udp' : 'tcp';
      const wide = worldOpenings(openings, protocol, t.port);
      if (wide.length > 0) {
        findings.push({
          id: `sg.sip_world.${t.protocol}.${t.port}`,
          severity: 'warning',
          event: 'drift.security_group',
          message: `SIP over ${t.protocol.toUpperCase()} ${t.port} is open to the whole internet (${worldText(wide)}) although network.allowed_networks limits phones to ${desired.allowedNetworks.join(', ')}: SIP scanners will find it`,
          expected: `${protocol.toUpperCase()} ${t.port} open only from ${desired.allowedNetworks.join(', ')}`,
          actual: wide.map(describeOpening).join('; '),
          fix: [
            ...wide.map(revoke),
            ...desired.allowedNetworks.map((n) => `aws ec2 authorize-security-group-ingress --group-id ${wide[0]!.groupId} ${ruleArgs(protocol, t.port, t.port, n, false)}`),
          ].join('\n'),
        });
      }
    }
  }

  // Ports that must never be open to the world.
  const dangerous = [
    { id: 'sg.ami_world', port: desired.amiPort, what: `the Asterisk Manager port (AMI, TCP ${desired.amiPort})`, why: 'anyone who guesses a manager password controls the PBX' },
    { id: 'sg.ssh_world', port: 22, what: 'SSH (TCP 22)', why: 'restrict it to your own address, or use SSM Session Manager' },
  ];
  for (const d of dangerous) {
    const wide = worldOpenings(openings, 'tcp', d.port);
    if (wide.length > 0) {
      findings.push({
        id: d.id,
        severity: 'error',
        event: 'drift.security_group',
        message: `${d.what} is open to the whole internet: ${worldText(wide)}; ${d.why}`,
        expected: `TCP ${d.port} not open to every address (0.0.0.0/0 or ::/0, in one rule or in several)`,
        actual: wide.map(describeOpening).join('; '),
        fix: wide.map(revoke).join('\n'),
      });
    }
  }

  if (!findings.some((x) => x.severity !== 'info')) {
    findings.push({
      id: 'sg',
      severity: 'info',
      event: 'drift.security_group',
      message: `security groups ${groupsText}: SIP and RTP ${range(desired.rtp.portStart, desired.rtp.portEnd)} open, AMI and SSH not open to the world`,
      expected: needs(desired).map((n) => `${n.protocol.toUpperCase()} ${range(n.from, n.to)}`).join(', '),
      actual: groupsText,
      fix: '',
    });
  }
  return findings;
}

// ---------------------------------------------------------------------------------------------
// EC2 API problems

const NOT_CHECKED: Record<Ec2Action, string> = {
  DescribeAddresses: 'the Elastic IP cannot be confirmed',
  DescribeSecurityGroups: 'security group rules are not checked',
  DescribeInstances: 'the security groups of the instance are not known, so their rules are not checked',
};

/**
 * EC2 calls that failed. Access denied is one finding per IAM action (each is its own line in a
 * policy); every other failure of a run is one `cloud.error` finding, id `ec2`: one failed
 * check is said once, not once per call it made.
 */
export function problemFindings(facts: CloudFacts): Finding[] {
  const findings: Finding[] = [];
  for (const p of facts.problems.filter((x) => x.kind === 'access_denied')) {
    findings.push({
      id: `denied.${p.action}`,
      severity: 'warning',
      event: 'cloud.access_denied',
      message: `${ec2FailureText(p)}: ${NOT_CHECKED[p.action]}`,
      expected: `${p.iamAction} allowed`,
      actual: `${p.code}${p.httpStatus ? ` (HTTP ${p.httpStatus})` : ''}`,
      fix: ec2FailureFix(p),
    });
  }
  const failed = facts.problems.filter((x) => x.kind !== 'access_denied');
  if (failed.length > 0) {
    const unique = (xs: string[]) => [...new Set(xs)];
    findings.push({
      id: 'ec2',
      severity: 'warning',
      event: 'cloud.error',
      message: `the EC2 API could not be asked: ${unique(failed.map(ec2FailureText)).join('; ')}; ${unique(failed.map((p) => NOT_CHECKED[p.action])).join(', ')}`,
      expected: `${failed.map((p) => p.iamAction).join(', ')} answered`,
      actual: failed.map((p) => `${p.action}: ${p.kind} (${p.code}${p.httpStatus ? `, HTTP ${p.httpStatus}` : ''})`).join('; '),
      fix: unique(failed.map(ec2FailureFix)).join('\n'),
    });
  }
  return findings;
}

/** Every cloud check, errors first. */
export function evaluateCloud(desired: CloudDesired, facts: CloudFacts): Finding[] {
  const all = [...checkElasticIp(desired, facts), ...checkLocalNet(desired, facts), ...checkSecurityGroups(desired, facts), ...problemFindings(facts)];
  const rank: Record<Severity, number> = { error: 0, warning: 1, info: 2 };
  return all.map((f, i) => [f, i] as const).sort((a, b) => rank[a[0].severity] - rank[b[0].severity] || a[1] - b[1]).map(([f]) => f);
}
