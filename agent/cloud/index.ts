/**
 * cloud: is this instance what the config repo assumes? IMDSv2 (imds.ts) for the instance's own
 * facts and its role's credentials, the EC2 API in a short-lived worker process (ec2.ts) for its
 * Elastic IP and security group rules, pure checks (checks.ts) for the findings, and logging that
 * says each drift once per change plus a periodic reminder (DriftReporter), not on every run.
 *
 * The daemon holds a CloudMonitor: one gathering of facts at a time (a call while one runs joins
 * it, so a hung EC2 endpoint never piles up worker processes), and a check that could not run
 * (EC2 did not answer) keeps the last known finding instead of turning into a changed drift.
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
  type FindingEvent,
  type Severity,
} from './checks.js';
import type { Ec2Action, Ec2ErrorInfo, Ec2WorkerOutput, ElasticAddress, WorkerCredentials } from './ec2-protocol.js';
import { DEFAULT_EC2_RETRY_PLAN, Ec2WorkerError, queryEc2, type Ec2QueryOptions, type Ec2RetryPlan } from './ec2.js';
import { DEFAULT_IMDS_TIMEOUT_MS, ImdsClient, ImdsError, imdsEndpointFrom, type ImdsClientOptions, type InstanceIdentity } from './imds.js';

export { cloudDesiredFrom, ec2FailureFix, ec2FailureText, elasticIpFor, eipDecision, evaluateCloud } from './checks.js';
export type { CloudDesired, CloudFacts, EipDecision, EipPolicy, Finding, FindingEvent, Severity } from './checks.js';
export { DEFAULT_EC2_RETRY_PLAN, workerKillTimeoutMs, worstCallMs, type Ec2RetryPlan } from './ec2.js';
export { ImdsClient, ImdsError, imdsEndpointFrom, type InstanceIdentity } from './imds.js';

export type CloudSettingsData = z.output<typeof CloudSettings>;

export interface CloudCheckOptions {
  /** The `cloud` section of the agent's settings. */
  settings: CloudSettingsData;
  /**
   * The agent's environment (default process.env): AWS_EC2_METADATA_SERVICE_ENDPOINT, and the
   * EC2 worker's environment unless ec2.env is given.
   */
  env?: NodeJS.ProcessEnv;
  /**
   * IMDS client tuning (retries; timeoutMs overrides settings.imds_timeout_ms). The endpoint is
   * settings.imds_endpoint, else AWS_EC2_METADATA_SERVICE_ENDPOINT, else 169.254.169.254.
   */
  imds?: Omit<ImdsClientOptions, 'endpoint'>;
  /**
   * EC2 worker tuning: the retry plan (default DEFAULT_EC2_RETRY_PLAN) and the kill timeout
   * (default: derived from the plan, see workerKillTimeoutMs).
   */
  ec2?: Omit<Ec2QueryOptions, 'imdsEndpoint'> & Partial<Ec2RetryPlan>;
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
  /** With state kept between runs (the daemon): every drift open after this run. */
  drifts?: OpenDrift[];
}

/** A drift that is open now, as the daemon records it in its state. */
export interface OpenDrift {
  /** The log event, e.g. drift.eip, drift.security_group, cloud.error. */
  event: FindingEvent;
  /** The check's stable id, e.g. eip, sg.rtp. */
  check: string;
  severity: Exclude<Severity, 'info'>;
  message: string;
  expected: string;
  actual: string;
  fix: string;
  /** ISO time the drift appeared (kept while it changes; a resolved drift that comes back starts again). */
  since: string;
  /** ISO time it was last logged: when it appeared or changed, or the last reminder. */
  lastReminder: string;
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
        this.active.set(key, { finding, signature, since: prev.since, lastLogged: now });
        log.push({ finding, reason: 'changed', since: prev.since });
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

  /** Drifts currently open, with since when and when they were last logged. */
  openDrifts(): OpenDrift[] {
    return [...this.active.values()].map(({ finding: f, since, lastLogged }) => ({
      event: f.event,
      check: f.id,
      severity: f.severity === 'error' ? 'error' : 'warning',
      message: f.message,
      expected: f.expected,
      actual: f.actual,
      fix: f.fix,
      since: new Date(since).toISOString(),
      lastReminder: new Date(lastLogged).toISOString(),
    }));
  }
}

/** The findings of a check group from the last run that could make it. */
interface KnownFindings {
  findings: Finding[];
  at: number;
  /** The desired state they were made against (JSON): carried over only for the same. */
  desired: string;
}

/** What the daemon keeps between cloud runs. */
export class CloudCheckState {
  readonly reporter: DriftReporter;
  imds: ImdsClient | undefined;
  /** The cloud.unavailable code last logged; undefined while IMDS answers. */
  unavailableLogged: string | undefined;
  lastFacts: GatheredFacts | undefined;
  /** Per check group (drift.eip, drift.security_group): the last findings made with EC2's answer. */
  readonly known = new Map<FindingEvent, KnownFindings>();

  constructor(options: { reminderMinutes: number; now?: () => number }) {
    this.reporter = new DriftReporter({ reminderMs: options.reminderMinutes * 60_000, ...(options.now ? { now: options.now } : {}) });
  }
}

// ---------------------------------------------------------------------------------------------
// Gathering facts

const WORKER_ACTIONS: Ec2Action[] = ['DescribeAddresses', 'DescribeSecurityGroups'];

function failedActions(info: Omit<Ec2ErrorInfo, 'action' | 'iamAction'>, actions: Ec2Action[]): Ec2ErrorInfo[] {
  return actions.map((action) => ({ ...info, action, iamAction: `ec2:${action}` }));
}

function workerFailure(e: Ec2WorkerError, actions: Ec2Action[]): Ec2ErrorInfo[] {
  return failedActions({ kind: 'worker', code: `worker_${e.code}`, message: e.message }, actions);
}

/** Credentials the SDK's default chain would find before the instance role: use those instead. */
function hasOwnCredentials(env: NodeJS.ProcessEnv): boolean {
  return ['AWS_ACCESS_KEY_ID', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI'].some(
    (k) => (env[k] ?? '') !== '',
  );
}

/** The IMDS client of these options: the state's (the daemon's, which keeps its token and credentials) or a new one. */
function imdsClientFor(options: CloudCheckOptions): ImdsClient {
  if (options.state?.imds) return options.state.imds;
  const env = options.env ?? process.env;
  const client = new ImdsClient({
    timeoutMs: options.settings.imds_timeout_ms ?? DEFAULT_IMDS_TIMEOUT_MS,
    ...(options.imds ?? {}),
    endpoint: imdsEndpointFrom(options.settings.imds_endpoint, env),
    ...(options.now ? { now: options.now } : {}),
  });
  if (options.state) options.state.imds = client;
  return client;
}

/** IMDS facts, then the EC2 worker for the Elastic IP and the security group rules. */
export async function gatherCloudFacts(options: CloudCheckOptions): Promise<GatheredFacts> {
  const now = options.now ?? Date.now;
  const settings = options.settings;
  const imds = imdsClientFor(options);

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
  const workerEnv = ec2.env ?? options.env ?? process.env;
  const queryOptions: Ec2QueryOptions = { env: workerEnv, imdsEndpoint: imds.endpoint };
  if (ec2.timeoutMs !== undefined) queryOptions.timeoutMs = ec2.timeoutMs;

  // The instance role's credentials from this process's IMDS client (cached until shortly
  // before they expire): the worker, a new process each time, would otherwise fetch a token and
  // the credentials again on every check.
  let credentials: WorkerCredentials | undefined;
  let credentialProblem: Ec2ErrorInfo[] | undefined;
  if (!hasOwnCredentials(workerEnv)) {
    try {
      const role = await imds.roleCredentials();
      if (role) credentials = { accessKeyId: role.accessKeyId, secretAccessKey: role.secretAccessKey, sessionToken: role.sessionToken, expiration: role.expiration };
      else {
        credentialProblem = failedActions(
          { kind: 'credentials', code: 'NoInstanceRole', message: `no instance role is attached to ${instance.instanceId} (IMDS lists no iam/security-credentials/) and the agent's environment holds no AWS keys` },
          WORKER_ACTIONS,
        );
      }
    } catch (e) {
      if (!(e instanceof ImdsError)) throw e;
      credentialProblem = failedActions({ kind: 'credentials', code: `imds_${e.code}`, message: `the instance role's credentials could not be read: ${e.message}` }, WORKER_ACTIONS);
    }
  }

  if (credentialProblem) {
    facts.problems.push(...credentialProblem);
  } else {
    try {
      const { output, wallMs } = await queryEc2(
        {
          region: instance.region,
          ...(settings.ec2_endpoint ? { endpoint: settings.ec2_endpoint } : {}),
          instanceId: instance.instanceId,
          securityGroupIds: instance.securityGroupIds,
          maxAttempts: ec2.maxAttempts ?? DEFAULT_EC2_RETRY_PLAN.maxAttempts,
          baseDelayMs: ec2.baseDelayMs ?? DEFAULT_EC2_RETRY_PLAN.baseDelayMs,
          maxDelayMs: ec2.maxDelayMs ?? DEFAULT_EC2_RETRY_PLAN.maxDelayMs,
          requestTimeoutMs: ec2.requestTimeoutMs ?? DEFAULT_EC2_RETRY_PLAN.requestTimeoutMs,
          ...(credentials ? { credentials } : {}),
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
    // Refused or expired credentials from the cache: fetch fresh ones next time.
    if (credentials && facts.problems.some((p) => p.kind === 'expired' || p.kind === 'auth')) imds.dropCredentials();
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
  const stale = f.lastChecked ? { lastChecked: f.lastChecked } : {};
  logEvent(log, LEVEL[f.severity], f.event, { check: f.id, expected: f.expected, actual: f.actual, fix: f.fix, ...stale, ...extra }, f.message);
}

/** The checks that need an EC2 answer, by the event of their findings. */
const EC2_CHECKS: Array<{ event: FindingEvent; answered: (facts: CloudFacts) => boolean }> = [
  { event: 'drift.eip', answered: (facts) => facts.elasticIps !== undefined },
  { event: 'drift.security_group', answered: (facts) => facts.securityGroups !== undefined },
];

const ERRORS_FIRST: Record<Severity, number> = { error: 0, warning: 1, info: 2 };

/**
 * A check that could not run this time (EC2 did not answer, or refused) is not a change of what
 * it found: its findings from the last run that could make it stand, marked with lastChecked,
 * and the failure itself is its own finding (cloud.error / cloud.access_denied). Without an
 * earlier answer (for this desired state) the run's own findings stand: what IMDS alone tells.
 */
function carryOver(state: CloudCheckState, desired: CloudDesired, facts: CloudFacts, findings: Finding[], at: number): Finding[] {
  const desiredKey = JSON.stringify(desired);
  let out = findings;
  for (const check of EC2_CHECKS) {
    if (check.answered(facts)) {
      state.known.set(check.event, { findings: findings.filter((f) => f.event === check.event), at, desired: desiredKey });
      continue;
    }
    const known = state.known.get(check.event);
    if (!known || known.desired !== desiredKey) continue;
    const lastChecked = new Date(known.at).toISOString();
    out = [...out.filter((f) => f.event !== check.event), ...known.findings.map((f) => ({ ...f, lastChecked }))];
  }
  return out.map((f, i) => [f, i] as const).sort((a, b) => ERRORS_FIRST[a[0].severity] - ERRORS_FIRST[b[0].severity] || a[1] - b[1]).map(([f]) => f);
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
      ...(state ? { drifts: state.reporter.openDrifts() } : {}),
    };
  }
  if (state?.unavailableLogged !== undefined) {
    logEvent(log, 'info', 'cloud.available', { previously: state.unavailableLogged }, 'instance metadata answers again; cloud checks resume');
    state.unavailableLogged = undefined;
  }

  const { facts } = gathered;
  const evaluated = evaluateCloud(input.desired, facts);
  const findings = state ? carryOver(state, input.desired, facts, evaluated, gathered.at) : evaluated;
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
  if (state) report.drifts = state.reporter.openDrifts();
  return report;
}

// ---------------------------------------------------------------------------------------------
// The daemon's handle

/**
 * What the daemon holds: run the checks on its schedule, and answer HostFacts.elasticIp for the
 * resolve stage from the last facts while they are fresh (no worker process per reconcile).
 *
 * Single-flight: facts are gathered (IMDS, then one EC2 worker process) by one run at a time. A
 * check() or elasticIp() that comes while a gathering runs joins it instead of starting another,
 * so a hung EC2 endpoint costs one worker, not one per schedule tick; a check() for the same
 * desired state gets the same report, one for another desired state evaluates it against the
 * same facts.
 */
export class CloudMonitor {
  readonly state: CloudCheckState;
  lastReport: CloudReport | undefined;
  private gathering: Promise<GatheredFacts> | undefined;
  private checking: { desired: string; report: Promise<CloudReport> } | undefined;

  constructor(
    private readonly options: Omit<CloudCheckOptions, 'state'>,
    private readonly log: Logger,
  ) {
    this.state = new CloudCheckState({ reminderMinutes: options.settings.reminder_minutes, ...(options.now ? { now: options.now } : {}) });
  }

  /** Whether facts are being gathered right now. */
  get busy(): boolean {
    return this.gathering !== undefined;
  }

  /** The running gathering, or a new one. */
  private gather(): Promise<GatheredFacts> {
    if (!this.gathering) {
      const run = gatherCloudFacts({ ...this.options, state: this.state });
      this.gathering = run;
      const done = () => {
        if (this.gathering === run) this.gathering = undefined;
      };
      run.then(done, done);
    }
    return this.gathering;
  }

  check(desired: CloudDesired): Promise<CloudReport> {
    const key = JSON.stringify(desired);
    if (this.checking?.desired === key) return this.checking.report;
    const options = { ...this.options, state: this.state };
    const report = (async () => {
      if (!options.settings.enabled) return runCloudChecks({ desired }, options, this.log);
      const facts = await this.gather();
      const r = await runCloudChecks({ desired, facts }, options, this.log);
      this.lastReport = r;
      return r;
    })();
    const entry = { desired: key, report };
    this.checking = entry;
    const done = () => {
      if (this.checking === entry) this.checking = undefined;
    };
    report.then(done, done);
    return report;
  }

  /** For HostFacts.elasticIp: facts younger than maxAgeMs are reused, older ones refreshed (joining a gathering in progress). */
  async elasticIp(maxAgeMs = 10 * 60_000): Promise<{ address: string } | { problem: string }> {
    if (!this.options.settings.enabled) return { problem: 'cloud checks are turned off (cloud.enabled: false); set external_address explicitly' };
    const now = (this.options.now ?? Date.now)();
    let facts = this.state.lastFacts;
    if (!facts || now - facts.at > maxAgeMs) {
      facts = await this.gather();
      this.state.lastFacts = facts;
    }
    return elasticIpFor(facts.ok ? facts.facts : { unavailable: facts.unavailable.message });
  }

  /**
   * Every cloud drift open now: event, check id, severity, message, expected, actual, fix, since
   * when, and when it was last logged. What the daemon records in its state for `status`.
   */
  openDrifts(): OpenDrift[] {
    return this.state.reporter.openDrifts();
  }
}
