/**
 * cloud: is this instance what the config repo assumes? IMDSv2 (imds.ts) for the instance's own
 * facts, the EC2 API in a short-lived worker process (ec2.ts) for its Elastic IP and security
 * group rules, pure checks (checks.ts) for the findings, and logging that says each drift once
 * per change plus a periodic reminder (DriftReporter), not on every run.
 *
 * Off EC2, or with IMDS turned off, everything here degrades to one `cloud.unavailable` line and
 * a report that says why; nothing else in the agent depends on it.
 */
import type { z } from 'zod';
import type { CloudSettings } from '../../schemas/agent-settings.js';
import { logEvent, type Logger } from '../log.js';
import {
  chooseElasticIp,
  elasticIpFor,
  eipDecision,
  evaluateCloud,
  type CloudDesired,
  type CloudFacts,
  type EipDecision,
  type Finding,
  type Severity,
} from './checks.js';
import type { Ec2Action, Ec2ErrorInfo, Ec2WorkerOutput, ElasticAddress } from './ec2-protocol.js';
import { Ec2WorkerError, queryEc2, type Ec2QueryOptions } from './ec2.js';
import { ImdsClient, ImdsError, type ImdsClientOptions, type InstanceIdentity } from './imds.js';

export { cloudDesiredFrom, elasticIpFor, eipDecision, evaluateCloud } from './checks.js';
export type { CloudDesired, CloudFacts, EipDecision, EipPolicy, Finding, FindingEvent, Severity } from './checks.js';
export { ImdsClient, ImdsError, type InstanceIdentity } from './imds.js';

export type CloudSettingsData = z.output<typeof CloudSettings>;

export interface CloudCheckOptions {
  /** The `cloud` section of the agent's settings. */
  settings: CloudSettingsData;
  /** IMDS client tuning (timeouts, retries); the endpoint comes from settings.imds_endpoint. */
  imds?: Omit<ImdsClientOptions, 'endpoint'>;
  /** EC2 worker tuning. */
  ec2?: Omit<Ec2QueryOptions, 'imdsEndpoint'> & { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number; requestTimeoutMs?: number };
  /** State kept between runs (the daemon): once-only logging, drift reminders, IMDS token. */
  state?: CloudCheckState;
  /** Clock, ms (tests). */
  now?: () => number;
}

export interface CloudUnavailable {
  /** ImdsErrorCode, e.g. unreachable, timeout, disabled, imdsv1_only, hop_limit. */
  code: string;
  message: string;
  fix?: string;
}

export interface Ec2WorkerStats {
  /** Spawn to exit, ms. */
  wallMs: number;
  peakRssKb: number;
  sdkImportMs: number;
  callsMs: number;
  /** Throttled answers that were backed off from and retried. */
  throttled: number;
}

export type GatheredFacts =
  | { ok: true; facts: CloudFacts; at: number; timings: { imdsMs: number; ec2Ms: number }; worker?: Ec2WorkerStats }
  | { ok: false; unavailable: CloudUnavailable; at: number; timings: { imdsMs: number; ec2Ms: number } };

export interface CloudReport {
  /** ok: checks ran (findings may still hold errors); unavailable: no IMDS; disabled: cloud.enabled false. */
  status: 'ok' | 'unavailable' | 'disabled';
  at: string;
  unavailable?: CloudUnavailable;
  instance?: InstanceIdentity;
  /** The instance's Elastic IP; null when none is associated; absent when unknown. */
  elasticIp?: ElasticAddress | null;
  securityGroups?: Array<{ groupId: string; groupName?: string }>;
  findings: Finding[];
  counts: Record<Severity, number>;
  /** What to do about the external address under cloud.eip_policy; the daemon acts on adopt. */
  decision: EipDecision;
  timings: { imdsMs: number; ec2Ms: number; totalMs: number };
  ec2Worker?: Ec2WorkerStats;
}

// ---------------------------------------------------------------------------------------------
// Drift reporting

export type DriftLogReason = 'new' | 'changed' | 'reminder';

/**
 * Decides when a persisting drift is logged: when it first appears, when it changes (severity,
 * expected or actual), and then every `reminderMs`; and when it goes away (`resolved`). Pure
 * logic with an injected clock. Info findings are not drift and are ignored.
 */
export class DriftReporter {
  private readonly active = new Map<string, { finding: Finding; signature: string; since: number; lastLogged: number }>();
  private readonly now: () => number;

  constructor(private readonly options: { reminderMs: number; now?: () => number }) {
    this.now = options.now ?? Date.now;
  }

  /**
   * One run's findings. `covered(id)` says whether this run checked the thing a previous
   * finding was about (a check that could not run must not look like a fixed drift); default:
   * everything was checked.
   */
  observe(
    findings: readonly Finding[],
    covered: (id: string) => boolean = () => true,
  ): { log: Array<{ finding: Finding; reason: DriftLogReason; since: number }>; resolved: Array<{ finding: Finding; since: number }> } {
    const now = this.now();
    const log: Array<{ finding: Finding; reason: DriftLogReason; since: number }> = [];
    const seen = new Set<string>();
    for (const finding of findings) {
      if (finding.severity === 'info') continue;
      const key = `${finding.event}:${finding.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const signature = JSON.stringify([finding.severity, finding.expected, finding.actual]);
      const prev = this.active.get(key);
      if (!prev) {
        this.active.set(key, { finding, signature, since: now, lastLogged: now });
        log.push({ finding, reason: 'new', since: now });
      } else if (prev.signature !== signature) {
        this.active.set(key, { finding, signature, since: now, lastLogged: now });
        log.push({ finding, reason: 'changed', since: now });
      } else if (now - prev.lastLogged >= this.options.reminderMs) {
        prev.lastLogged = now;
        prev.finding = finding;
        log.push({ finding, reason: 'reminder', since: prev.since });
      } else {
        prev.finding = finding;
      }
    }
    const resolved: Array<{ finding: Finding; since: number }> = [];
    for (const [key, entry] of this.active) {
      if (seen.has(key) || !covered(entry.finding.id)) continue;
      this.active.delete(key);
      resolved.push({ finding: entry.finding, since: entry.since });
    }
    return { log, resolved };
  }

  /** Drifts currently open. */
  get open(): Finding[] {
    return [...this.active.values()].map((e) => e.finding);
  }
}

/** What the daemon keeps between cloud runs. */
export class CloudCheckState {
  readonly reporter: DriftReporter;
  imds: ImdsClient | undefined;
  /** The cloud.unavailable code last logged; undefined while IMDS answers. */
  unavailableLogged: string | undefined;
  lastFacts: GatheredFacts | undefined;

  constructor(options: { reminderMinutes: number; now?: () => number }) {
    this.reporter = new DriftReporter({ reminderMs: options.reminderMinutes * 60_000, ...(options.now ? { now: options.now } : {}) });
  }
}

// ---------------------------------------------------------------------------------------------
// Gathering facts

const WORKER_ACTIONS: Ec2Action[] = ['DescribeAddresses', 'DescribeSecurityGroups'];

function workerFailure(e: Ec2WorkerError, actions: Ec2Action[]): Ec2ErrorInfo[] {
  return actions.map((action) => ({
    kind: e.code === 'timeout' ? 'network' : 'other',
    code: `worker_${e.code}`,
    message: e.message,
    action,
    iamAction: `ec2:${action}`,
  }));
}

/** IMDS facts, then the EC2 worker for the Elastic IP and the security group rules. */
export async function gatherCloudFacts(options: CloudCheckOptions): Promise<GatheredFacts> {
  const now = options.now ?? Date.now;
  const settings = options.settings;
  const imds =
    options.state?.imds ??
    new ImdsClient({ ...(options.imds ?? {}), ...(settings.imds_endpoint ? { endpoint: settings.imds_endpoint } : {}), ...(options.now ? { now: options.now } : {}) });
  if (options.state) options.state.imds = imds;

  const t0 = performance.now();
  let instance: InstanceIdentity;
  try {
    instance = await imds.instanceIdentity();
  } catch (e) {
    if (!(e instanceof ImdsError)) throw e;
    const unavailable: CloudUnavailable = { code: e.code, message: e.message };
    if (e.fix) unavailable.fix = e.fix;
    return { ok: false, unavailable, at: now(), timings: { imdsMs: performance.now() - t0, ec2Ms: 0 } };
  }
  const t1 = performance.now();

  const facts: CloudFacts = { instance, problems: [] };
  let worker: Ec2WorkerStats | undefined;
  const ec2 = options.ec2 ?? {};
  const queryOptions: Ec2QueryOptions = {};
  if (ec2.timeoutMs !== undefined) queryOptions.timeoutMs = ec2.timeoutMs;
  if (ec2.env !== undefined) queryOptions.env = ec2.env;
  if (settings.imds_endpoint) queryOptions.imdsEndpoint = settings.imds_endpoint;
  try {
    const { output, wallMs } = await queryEc2(
      {
        region: instance.region,
        ...(settings.ec2_endpoint ? { endpoint: settings.ec2_endpoint } : {}),
        instanceId: instance.instanceId,
        securityGroupIds: instance.securityGroupIds,
        maxAttempts: ec2.maxAttempts ?? 5,
        baseDelayMs: ec2.baseDelayMs ?? 500,
        maxDelayMs: ec2.maxDelayMs ?? 8000,
        requestTimeoutMs: ec2.requestTimeoutMs ?? 5000,
      },
      queryOptions,
    );
    applyWorkerOutput(facts, output);
    const calls = [output.addresses, output.instance, output.securityGroups].filter((c) => c !== undefined);
    worker = { wallMs, ...output.stats, throttled: calls.reduce((n, c) => n + c.throttled, 0) };
  } catch (e) {
    if (!(e instanceof Ec2WorkerError)) throw e;
    facts.problems.push(...workerFailure(e, WORKER_ACTIONS));
  }
  const result: GatheredFacts = { ok: true, facts, at: now(), timings: { imdsMs: t1 - t0, ec2Ms: performance.now() - t1 } };
  if (worker) result.worker = worker;
  return result;
}

function applyWorkerOutput(facts: CloudFacts, output: Ec2WorkerOutput): void {
  if (output.addresses.ok) facts.elasticIps = output.addresses.value;
  else facts.problems.push(output.addresses.error);
  if (output.instance && !output.instance.ok) facts.problems.push(output.instance.error);
  if (output.securityGroups) {
    if (output.securityGroups.ok) facts.securityGroups = output.securityGroups.value;
    else facts.problems.push(output.securityGroups.error);
  } else if (output.instance?.ok) {
    facts.securityGroups = []; // the instance has no security group at all
  }
}

// ---------------------------------------------------------------------------------------------
// Running the checks

/** Which finding ids a run could have produced, so a check that did not run is not "resolved". */
function coverage(facts: CloudFacts): (id: string) => boolean {
  return (id) => {
    if (id.startsWith('sg')) return facts.securityGroups !== undefined;
    if (id.startsWith('local_net')) return facts.instance.vpcCidrBlocks.length > 0;
    return true;
  };
}

const LEVEL: Record<Exclude<Severity, 'info'>, 'error' | 'warn'> = { error: 'error', warning: 'warn' };

function logFinding(log: Logger, f: Finding, extra: Record<string, unknown>): void {
  if (f.severity === 'info') return;
  logEvent(log, LEVEL[f.severity], f.event, { check: f.id, expected: f.expected, actual: f.actual, fix: f.fix, ...extra }, f.message);
}

function actionFor(f: Finding, decision: EipDecision): string {
  if (f.event !== 'drift.eip') return 'alert';
  if (decision.action === 'adopt') return `adopt ${decision.address}`;
  return 'alert; the rendered configuration is left as it is';
}

/**
 * One run of every cloud check. With `options.state` (the daemon) drifts are logged once per
 * change plus reminders and cloud.unavailable once; without it every warning and error is
 * logged. `input.facts` lets a caller that already gathered them (pbx-agent check) reuse them.
 */
export async function runCloudChecks(
  input: { desired: CloudDesired; facts?: GatheredFacts },
  options: CloudCheckOptions,
  log: Logger,
): Promise<CloudReport> {
  const now = options.now ?? Date.now;
  const t0 = performance.now();
  const counts = (findings: Finding[]) => ({
    error: findings.filter((f) => f.severity === 'error').length,
    warning: findings.filter((f) => f.severity === 'warning').length,
    info: findings.filter((f) => f.severity === 'info').length,
  });
  if (!options.settings.enabled) {
    return { status: 'disabled', at: new Date(now()).toISOString(), findings: [], counts: counts([]), decision: { action: 'none' }, timings: { imdsMs: 0, ec2Ms: 0, totalMs: 0 } };
  }

  const gathered = input.facts ?? (await gatherCloudFacts(options));
  // Gathered here: the clock covers it; handed in: add the time it took then.
  const totalMs = () => performance.now() - t0 + (input.facts ? gathered.timings.imdsMs + gathered.timings.ec2Ms : 0);
  const state = options.state;
  if (state) state.lastFacts = gathered;

  if (!gathered.ok) {
    const u = gathered.unavailable;
    if (!state || state.unavailableLogged !== u.code) {
      logEvent(log, 'warn', 'cloud.unavailable', { code: u.code, fix: u.fix }, `cloud checks skipped: ${u.message}`);
      if (state) state.unavailableLogged = u.code;
    }
    return {
      status: 'unavailable',
      at: new Date(gathered.at).toISOString(),
      unavailable: u,
      findings: [],
      counts: counts([]),
      decision: { action: 'none' },
      timings: { ...gathered.timings, totalMs: totalMs() },
    };
  }
  if (state?.unavailableLogged !== undefined) {
    logEvent(log, 'info', 'cloud.available', { previously: state.unavailableLogged }, 'instance metadata answers again; cloud checks resume');
    state.unavailableLogged = undefined;
  }

  const { facts } = gathered;
  const findings = evaluateCloud(input.desired, facts);
  const decision = eipDecision(input.desired, facts, options.settings.eip_policy);
  const instanceId = facts.instance.instanceId;

  if (state) {
    const { log: toLog, resolved } = state.reporter.observe(findings, coverage(facts));
    for (const { finding, reason, since } of toLog) {
      logFinding(log, finding, { instance: instanceId, reason, since: new Date(since).toISOString(), action: actionFor(finding, decision) });
    }
    for (const { finding, since } of resolved) {
      logEvent(log, 'info', 'drift.resolved', { drift: finding.event, check: finding.id, instance: instanceId, since: new Date(since).toISOString() }, `resolved: ${finding.message}`);
    }
  } else {
    for (const f of findings) logFinding(log, f, { instance: instanceId, action: actionFor(f, decision) });
  }

  const chosen = chooseElasticIp(facts);
  const c = counts(findings);
  log.debug({ event: 'cloud.checked', instance: instanceId, ...c, decision: decision.action }, 'cloud checks done');
  const report: CloudReport = {
    status: 'ok',
    at: new Date(gathered.at).toISOString(),
    instance: facts.instance,
    findings,
    counts: c,
    decision,
    timings: { ...gathered.timings, totalMs: totalMs() },
  };
  if ('address' in chosen) report.elasticIp = chosen.address;
  else if ('none' in chosen) report.elasticIp = null;
  if (facts.securityGroups) report.securityGroups = facts.securityGroups.map((g) => ({ groupId: g.groupId, ...(g.groupName ? { groupName: g.groupName } : {}) }));
  if (gathered.worker) report.ec2Worker = gathered.worker;
  return report;
}

// ---------------------------------------------------------------------------------------------
// The daemon's handle

/**
 * What the daemon holds: run the checks on its schedule, and answer HostFacts.elasticIp for the
 * resolve stage from the last facts while they are fresh (no worker process per reconcile).
 */
export class CloudMonitor {
  readonly state: CloudCheckState;
  lastReport: CloudReport | undefined;

  constructor(
    private readonly options: Omit<CloudCheckOptions, 'state'>,
    private readonly log: Logger,
  ) {
    this.state = new CloudCheckState({ reminderMinutes: options.settings.reminder_minutes, ...(options.now ? { now: options.now } : {}) });
  }

  async check(desired: CloudDesired): Promise<CloudReport> {
    this.lastReport = await runCloudChecks({ desired }, { ...this.options, state: this.state }, this.log);
    return this.lastReport;
  }

  /** For HostFacts.elasticIp: facts younger than maxAgeMs are reused, older ones refreshed. */
  async elasticIp(maxAgeMs = 10 * 60_000): Promise<{ address: string } | { problem: string }> {
    if (!this.options.settings.enabled) return { problem: 'cloud checks are turned off (cloud.enabled: false); set external_address explicitly' };
    const now = (this.options.now ?? Date.now)();
    let facts = this.state.lastFacts;
    if (!facts || now - facts.at > maxAgeMs) {
      facts = await gatherCloudFacts({ ...this.options, state: this.state });
      this.state.lastFacts = facts;
    }
    return elasticIpFor(facts.ok ? facts.facts : { unavailable: facts.unavailable.message });
  }
}
