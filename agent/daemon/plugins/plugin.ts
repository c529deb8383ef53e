/**
 * A drift check the daemon runs beside its reconciles. Each is its own plug-in with a start and
 * a stop, runs at most once at a time with its own timeout, and does not depend on the others
 * or on Asterisk being up: the cloud checks matter most exactly when Asterisk is down.
 */
import type { AgentSettingsData } from '../../../schemas/agent-settings.js';
import type { AmiClient } from '../../asterisk/ami.js';
import type { AsteriskControl } from '../../asterisk/control.js';
import type { AppliedTexts } from '../../drift/applied-texts.js';
import type { DriftRecorder } from '../../drift/recorder.js';
import { logEvent, type Logger } from '../../log.js';
import type { StateStore } from '../../record/state.js';
import type { TriggerReason } from '../runner.js';

export interface DaemonContext {
  settings: AgentSettingsData;
  log: Logger;
  state: StateStore;
  drift: DriftRecorder;
  asterisk: AsteriskControl;
  /** The AMI connection, for whether it is up. */
  ami: Pick<AmiClient, 'connected'>;
  /** The managed files as last applied and verified. */
  expected(): AppliedTexts;
  /** A reconcile is running or about to: the managed files are in flux. */
  reconcileBusy(): boolean;
  requestRun(reason: TriggerReason): void;
  /**
   * Asks for a run that first records an Elastic IP to advertise instead of pbx.yaml's address
   * (or, with undefined, drops an earlier one). The state is only written under the reconcile
   * lock, by the run.
   */
  requestAdoption(adoption: { address: string; previous?: string } | undefined): void;
}

export interface DaemonPlugin {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs `job` at most once at a time: a call while it runs joins the run in progress, so a
 * schedule faster than the job (an EC2 API that hangs) never stacks up workers. After
 * `timeoutMs` the job's signal is aborted and the overrun is logged once; a new run still waits
 * until the old one has really ended.
 */
export class SingleFlight {
  private running: Promise<void> | undefined;
  private again: Promise<void> | undefined;

  constructor(
    private readonly name: string,
    private readonly timeoutMs: number,
    private readonly job: (signal: AbortSignal) => Promise<void>,
    private readonly log: Logger,
  ) {}

  run(): Promise<void> {
    if (this.running) return this.running;
    const abort = new AbortController();
    const timer = setTimeout(() => {
      abort.abort();
      logEvent(this.log, 'warn', 'drift.check_failed', { check: this.name, timeoutMs: this.timeoutMs }, `the ${this.name} check did not finish within ${this.timeoutMs / 1000} s; it is cut short and runs again on its schedule`);
    }, this.timeoutMs);
    timer.unref();
    this.running = this.job(abort.signal)
      .catch((e: unknown) => logEvent(this.log, 'warn', 'drift.check_failed', { check: this.name }, `the ${this.name} check failed: ${(e as Error).message}`))
      .finally(() => {
        clearTimeout(timer);
        this.running = undefined;
      });
    return this.running;
  }

  /**
   * Runs the job now, or once more when the run in progress is over: that one may have read what
   * has just changed. Requests that arrive meanwhile share that one further run.
   */
  rerun(): Promise<void> {
    if (!this.running) return this.run();
    return (this.again ??= this.running.then(() => {
      this.again = undefined;
      return this.run();
    }));
  }

  /** Waits for a run in progress, and for the further run asked for meanwhile, if any. */
  async idle(): Promise<void> {
    while (this.running || this.again) await (this.again ?? this.running);
  }
}
