/**
 * Live Asterisk state against the applied files, on schedule.drift. An error-level drift: what
 * Asterisk runs is not what the files (and `status`) say.
 */
import { schedule, type ScheduledTask } from 'node-cron';
import { findAsteriskDrift, operatorSectionNames } from '../../drift/asterisk.js';
import { logEvent } from '../../log.js';
import { managedFileOf, splitManagedText } from '../../managed-files.js';
import { describeMismatches } from '../../verify/index.js';
import { SingleFlight, type DaemonContext, type DaemonPlugin } from './plugin.js';

export class AsteriskDriftPlugin implements DaemonPlugin {
  readonly name = 'asterisk drift';
  private task: ScheduledTask | undefined;
  private readonly flight: SingleFlight;

  constructor(private readonly ctx: DaemonContext) {
    const timeoutMs = Math.max(30_000, ctx.settings.asterisk.ami.action_timeout_seconds * 4000);
    this.flight = new SingleFlight('asterisk drift', timeoutMs, () => this.check(), ctx.log);
  }

  async start(): Promise<void> {
    this.task = schedule(this.ctx.settings.schedule.drift, () => void this.flight.run(), { name: 'drift' });
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    await this.flight.idle();
  }

  run(): Promise<void> {
    return this.flight.run();
  }

  private async check(): Promise<void> {
    const { ctx } = this;
    // The reconcile reads live state itself; Asterisk away is ami.unreachable's news, not drift.
    if (ctx.reconcileBusy() || !ctx.ami.connected) return;
    const expected = ctx.expected();
    const pjsip = await expected.get(managedFileOf('res_pjsip').path);
    if (pjsip === undefined) return;
    const operator = await operatorSectionNames(ctx.settings.asterisk.config_dir);
    // Removed extensions locked out as live objects stay listed until the fold: not stale.
    for (const name of (await ctx.state.read()).live?.removed ?? []) operator.add(name);
    const mismatches = await findAsteriskDrift(ctx.asterisk, splitManagedText(pjsip).body, await expected.body('res_rtp_asterisk'), operator);
    if (ctx.reconcileBusy()) return; // a run started meanwhile: what was read may be mid-change
    const summary = mismatches.length ? describeMismatches(mismatches) : undefined;
    const decision = await ctx.drift.observe('asterisk', 'asterisk', summary ? { severity: 'error', message: `live Asterisk state differs from the applied configuration: ${summary}` } : undefined);
    if (decision === 'resolved') logEvent(ctx.log, 'info', 'drift.resolved', { drift: 'drift.asterisk', kind: 'asterisk' }, 'live Asterisk state matches the applied configuration again');
    else if (decision !== 'none') {
      logEvent(ctx.log, 'warn', 'drift.asterisk', { mismatches: mismatches.slice(0, 20), count: mismatches.length, action: 'alert', reason: decision },
        `live Asterisk state differs from the applied configuration: ${summary}`);
    }
  }
}
