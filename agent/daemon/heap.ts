/**
 * Gives memory back after the runs that took it. V8 grows its old generation while a run
 * allocates (render, plan, git output) and keeps the pages afterwards: over 60 runs the daemon's
 * RSS crept up by 3-6 MB with the unit's flags on Node 22 and 24, on a 1 GiB host that Asterisk
 * needs. A full collection once the live heap has grown by GROWTH_BYTES since the last one
 * (a few ms of CPU, and only after runs that allocated) keeps it flat; no-op runs rarely trigger it.
 *
 * `gc` exists only when node runs with --expose-gc, as the systemd unit starts the daemon;
 * elsewhere (tests, the CLI) this does nothing. The collection waits until no run has started for
 * QUIET_MS, so RSS is steady once the daemon is idle, not the moment a run ends.
 */
import v8 from 'node:v8';

const GROWTH_BYTES = 4 * 1024 * 1024;
/**
 * How long the daemon must be without a run before it collects. A collection blocks the event
 * loop (a memory-returning one: ~120 ms on a 40 MB heap under the unit's flags), so it waits for
 * a quiet moment instead of holding up the webhook of the next push in a burst.
 */
export const QUIET_MS = 2000;

/** `gc` as --expose-gc defines it: V8 12 and later also take options. */
export type ExposedGc = (options?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * V8 12 (Node.js 22) and later: a plain gc() frees the objects but keeps their pages, so RSS
 * stays where the run left it (seen: 150 MB → 149 MB after dropping 75 MB of objects on Node 22,
 * 24 and 26 with the unit's flags); the "last-resort" flavour compacts and hands the pages back
 * (150 MB → 75 MB). V8 11 (Node.js 20) ignores the options object and collects nothing, so there
 * gc() stays plain. (V8's d8/gc-extension: type, execution and flavor options.)
 */
export function takesGcOptions(v8Version = process.versions.v8): boolean {
  return Number(v8Version.split('.')[0]) >= 12;
}

export class HeapTrimmer {
  private baseline = v8.getHeapStatistics().used_heap_size;
  private rssBaseline = process.memoryUsage.rss();

  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly gc: ExposedGc | undefined = (globalThis as { gc?: ExposedGc }).gc,
    private readonly growthBytes = GROWTH_BYTES,
    private readonly options = takesGcOptions(),
    private readonly quietMs = QUIET_MS,
  ) {}

  /** A run starts: a collection still waiting for quiet waits for the next quiet moment. */
  runStarting(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** A run ended: afterRun() once no other run has started for quietMs. */
  runEnded(): void {
    this.runStarting();
    if (!this.gc) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.afterRun();
    }, this.quietMs);
    this.timer.unref();
  }

  /** Whether a collection is waiting for quiet. */
  get waiting(): boolean {
    return this.timer !== undefined;
  }

  /**
   * After a run: collect if the live heap or the process's RSS grew enough since the last
   * collection. True if it did. RSS counts too: when V8 has run an ordinary major collection of
   * its own meanwhile, the live heap is small again but the pages stay resident (measured on
   * Node 24 under the unit's flags: 180 MB RSS after a plain gc(), 59 MB after a last-resort one,
   * while the heap spaces' own physical sizes showed only 1 MB to spare).
   */
  afterRun(): boolean {
    if (!this.gc) return false;
    const grew = v8.getHeapStatistics().used_heap_size >= this.baseline + this.growthBytes;
    if (!grew && process.memoryUsage.rss() < this.rssBaseline + this.growthBytes) return false;
    if (this.options) this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    else this.gc();
    this.baseline = v8.getHeapStatistics().used_heap_size;
    this.rssBaseline = process.memoryUsage.rss();
    return true;
  }
}
