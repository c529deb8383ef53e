/**
 * One reconcile at a time. Triggers that arrive while a run is in progress collapse into a single
 * follow-up run; after a failed run, scheduled triggers wait out a doubling backoff (with a cap)
 * instead of hammering git or Asterisk, and a retry is scheduled at its end.
 */
export type TriggerReason = 'startup' | 'schedule' | 'webhook' | 'signal' | 'file' | 'drift' | 'retry' | 'cli';

export interface RunnerOptions {
  backoffBaseMs: number;
  backoffMaxMs: number;
  /**
   * Pushes and file edits come in bursts (a push of ten commits, an editor saving twice): such a
   * trigger starts a run after this much quiet, or `maxWaitMs` after the first, whichever is first.
   */
  quietMs?: number;
  maxWaitMs?: number;
  now?: () => number;
}

const BURSTY: ReadonlySet<TriggerReason> = new Set(['webhook', 'file', 'drift']);

export class SyncRunner {
  private running: Promise<void> | undefined;
  private followUp: TriggerReason | undefined;
  private failures = 0;
  private notBefore = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private quietTimer: NodeJS.Timeout | undefined;
  private burstStarted = 0;
  private burstReason: TriggerReason | undefined;
  readonly stats = { runs: 0, collapsed: 0, skippedForBackoff: 0 };

  constructor(
    private readonly job: (reason: TriggerReason) => Promise<{ ok: boolean }>,
    private readonly options: RunnerOptions,
    private readonly onSkip: (reason: TriggerReason, retryInMs: number) => void = () => undefined,
  ) {}

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Asks for a run. Scheduled triggers respect the backoff; people and pushes do not. */
  request(reason: TriggerReason): void {
    if (this.stopped) return;
    if (reason === 'schedule' && this.now() < this.notBefore) {
      this.stats.skippedForBackoff++;
      this.onSkip(reason, this.notBefore - this.now());
      return;
    }
    const quiet = this.options.quietMs ?? 0;
    if (!this.running && quiet > 0 && BURSTY.has(reason)) {
      if (this.burstReason !== undefined) this.stats.collapsed++;
      else this.burstStarted = this.now();
      this.burstReason = reason;
      clearTimeout(this.quietTimer);
      const wait = Math.max(0, Math.min(quiet, this.burstStarted + (this.options.maxWaitMs ?? quiet * 10) - this.now()));
      this.quietTimer = setTimeout(() => this.startBurst(), wait);
      return;
    }
    this.requestNow(reason);
  }

  private startBurst(): void {
    const reason = this.burstReason;
    this.burstReason = undefined;
    this.quietTimer = undefined;
    if (reason !== undefined && !this.stopped) this.requestNow(reason);
  }

  /** Starts now, or folds into the run in progress. */
  private requestNow(reason: TriggerReason): void {
    if (this.running) {
      if (this.followUp !== undefined) this.stats.collapsed++;
      this.followUp = reason;
      return;
    }
    this.start(reason);
  }

  private start(reason: TriggerReason): void {
    if (this.burstReason !== undefined) {
      // A direct trigger takes the waiting burst along.
      clearTimeout(this.quietTimer);
      this.burstReason = undefined;
      this.stats.collapsed++;
    }
    this.running = this.loop(reason);
  }

  private async loop(first: TriggerReason): Promise<void> {
    let reason: TriggerReason | undefined = first;
    while (reason !== undefined && !this.stopped) {
      this.followUp = undefined;
      this.stats.runs++;
      let ok = false;
      try {
        ok = (await this.job(reason)).ok;
      } catch {
        ok = false;
      }
      this.settle(ok);
      reason = this.followUp;
    }
    this.running = undefined;
  }

  private settle(ok: boolean): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (ok) {
      this.failures = 0;
      this.notBefore = 0;
      return;
    }
    this.failures++;
    const delay = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** (this.failures - 1));
    this.notBefore = this.now() + delay;
    if (!this.stopped) {
      this.retryTimer = setTimeout(() => this.request('retry'), delay);
      this.retryTimer.unref();
    }
  }

  /** Resolves when no run is in progress (the current one, with its follow-up, has finished). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** No new runs; the one in progress finishes. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.quietTimer);
    await this.idle();
  }

  /** A run is in progress or about to start (a burst is waiting for quiet). */
  get busy(): boolean {
    return this.running !== undefined || this.burstReason !== undefined;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}
