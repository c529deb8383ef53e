/**
 * One reconcile at a time. A trigger starts a run at once when none is running; triggers that
 * arrive during a run (a push of ten commits, an editor saving twice) fold into a single
 * follow-up run, which sees all of them. After a failed run, scheduled triggers wait out a
 * doubling backoff (with a cap) instead of hammering git or Asterisk, and a retry is scheduled
 * at its end; a job may ask for an earlier retry (a probe of a config repo that was out of reach).
 */
export type TriggerReason = 'startup' | 'schedule' | 'webhook' | 'signal' | 'file' | 'drift' | 'retry' | 'cli' | 'fold';

export interface RunnerOptions {
  backoffBaseMs: number;
  backoffMaxMs: number;
  now?: () => number;
}

export interface JobResult {
  ok: boolean;
  /** After a failure: retry no later than this (the backoff may say later). */
  retryInMs?: number;
}

/** Why a run started, and how long after it was asked for (behind a run in progress, mostly). */
export interface Trigger {
  reason: TriggerReason;
  /** From the first request this run answers to its start, in ms. */
  waitedMs: number;
}

export class SyncRunner {
  private running: Promise<void> | undefined;
  private followUp: TriggerReason | undefined;
  /** When the follow-up was first asked for (now()). */
  private followUpSince = 0;
  private failures = 0;
  private notBefore = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  readonly stats = { runs: 0, collapsed: 0, skippedForBackoff: 0 };

  constructor(
    private readonly job: (reason: TriggerReason, trigger: Trigger) => Promise<JobResult>,
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
    if (this.running) {
      // Folded into one follow-up run, which starts when this one ends and sees every change.
      if (this.followUp !== undefined) this.stats.collapsed++;
      // A fold does not fetch: it never takes the place of a sync that is waiting (the fold is
      // asked for again once that sync has run).
      if (this.followUp === undefined) this.followUpSince = this.now();
      if (reason !== 'fold' || this.followUp === undefined) this.followUp = reason;
      return;
    }
    this.running = this.loop(reason, this.now());
  }

  private async loop(first: TriggerReason, firstSince: number): Promise<void> {
    let reason: TriggerReason | undefined = first;
    let since = firstSince;
    while (reason !== undefined && !this.stopped) {
      this.followUp = undefined;
      this.stats.runs++;
      let result: JobResult = { ok: false };
      try {
        result = await this.job(reason, { reason, waitedMs: this.now() - since });
      } catch {
        result = { ok: false };
      }
      this.settle(result);
      reason = this.followUp;
      since = this.followUpSince;
    }
    this.running = undefined;
  }

  private settle({ ok, retryInMs }: JobResult): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (ok) {
      this.failures = 0;
      this.notBefore = 0;
      return;
    }
    this.failures++;
    const backoff = Math.min(this.options.backoffMaxMs, this.options.backoffBaseMs * 2 ** (this.failures - 1));
    const delay = retryInMs === undefined ? backoff : Math.min(backoff, retryInMs);
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
    await this.idle();
  }

  /** A run is in progress (or its follow-up is about to start). */
  get busy(): boolean {
    return this.running !== undefined;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }
}
