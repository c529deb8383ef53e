/**
 * The cloud checks on schedule.cloud, against the applied configuration's network facts (the
 * state's applied record: the advertised address and where it came from, ports, local_net):
 * never a re-read of the repo, never the rendered text. They need neither Asterisk nor a sync
 * in this process. Under `external_address: auto` a moved Elastic IP asks for a reconcile;
 * under `cloud.eip_policy: adopt` the new address is recorded in the state as a request that the
 * next reconcile renders.
 */
import { schedule, type ScheduledTask } from 'node-cron';
import { CloudMonitor, type CloudDesired, type CloudReport, type Finding } from '../../cloud/index.js';
import type { AppliedNetwork } from '../../record/state.js';
import { SingleFlight, type DaemonContext, type DaemonPlugin } from './plugin.js';

/** What the checks compare the instance with, from the applied record. */
export function cloudDesiredOf(network: AppliedNetwork, amiPort: number): CloudDesired {
  return {
    externalAddress: { configured: network.advertised.configured, live: network.advertised.address },
    localNets: [...network.localNets],
    transports: network.transports.map((t) => ({ ...t })),
    ...(network.allowedNetworks ? { allowedNetworks: [...network.allowedNetworks] } : {}),
    rtp: { ...network.rtp },
    amiPort,
  };
}

export class CloudPlugin implements DaemonPlugin {
  readonly name = 'cloud';
  private task: ScheduledTask | undefined;
  private readonly flight: SingleFlight;
  private started = false;

  constructor(private readonly ctx: DaemonContext, readonly monitor: CloudMonitor) {
    // Longer than one EC2 worker may live (its own kill timeout), so a hung API is reported by
    // the worker's error, not cut off here.
    this.flight = new SingleFlight('cloud', 120_000, () => this.check(), ctx.log);
  }

  async start(): Promise<void> {
    this.started = true;
    this.task = schedule(this.ctx.settings.schedule.cloud, () => void this.flight.run(), { name: 'cloud' });
    // At start, too: an Elastic IP that moved while the agent was down is news now.
    setImmediate(() => void this.flight.run());
  }

  async stop(): Promise<void> {
    this.started = false;
    await this.task?.stop();
    await this.flight.idle();
  }

  /**
   * Runs the checks now (after a reconcile changed addresses or ports), or once more after a run
   * in progress, which may have read the applied record before the change.
   */
  run(): Promise<void> {
    return this.started ? this.flight.rerun() : Promise.resolve();
  }

  private async check(): Promise<void> {
    const { ctx } = this;
    const state = await ctx.state.read();
    const network = state.applied?.network;
    if (!network) {
      ctx.log.debug({ event: 'cloud.checked' }, 'cloud checks wait for a first applied configuration');
      return;
    }
    const report = await this.monitor.check(cloudDesiredOf(network, ctx.settings.asterisk.ami.port));
    if (report.status === 'ok') await this.record(report);
    const decision = report.decision;
    if (decision.action !== 'adopt') return;
    if (decision.overridesConfig) {
      ctx.requestAdoption({ address: decision.address, ...(decision.previous ? { previous: decision.previous } : {}) });
    } else {
      // auto follows the Elastic IP by itself; and once it is pbx.yaml's own address again, an
      // earlier adoption must not keep overriding it.
      ctx.requestAdoption(undefined);
    }
  }

  /** Every open cloud finding into the drift record; one that a check covered and no longer finds is resolved. */
  private async record(report: CloudReport): Promise<void> {
    const { drift } = this.ctx;
    const seen = new Set<string>();
    for (const f of report.findings) {
      // Drifts of the instance only; an EC2 API that fails is cloud.error's news, not drift.
      if (f.severity === 'info' || !f.event.startsWith('drift.')) continue;
      const key = `cloud:${f.event}:${f.id}`;
      seen.add(key);
      await drift.observe(key, 'cloud', { severity: f.severity === 'error' ? 'error' : 'warning', message: f.message, signature: JSON.stringify([f.expected, f.actual]) });
    }
    for (const key of drift.keys('cloud')) {
      if (!seen.has(key) && covered(report, key)) await drift.observe(key, 'cloud', undefined);
    }
  }
}

/** Whether this run checked what `key` is about: a check that could not run has not fixed anything. */
function covered(report: CloudReport, key: string): boolean {
  const [, event, id] = key.split(':') as [string, Finding['event'], string];
  if (id?.startsWith('sg')) return report.securityGroups !== undefined;
  if (event === 'drift.eip') return report.elasticIp !== undefined;
  return true;
}

