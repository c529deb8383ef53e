/**
 * Gives memory back after the runs that took it. V8 grows its old generation while a run
 * allocates (render, plan, git output) and keeps the pages afterwards: over 60 runs the daemon's
 * RSS crept up by 3-6 MB with the unit's flags on Node 22 and 24, on a 1 GiB host that Asterisk
 * needs. A full collection once the live heap has grown by GROWTH_BYTES since the last one
 * (a few ms of CPU, and only after runs that allocated) keeps it flat; no-op runs rarely trigger it.
 *
 * `gc` exists only when node runs with --expose-gc, as the systemd unit starts the daemon;
 * elsewhere (tests, the CLI) this does nothing.
 */
import v8 from 'node:v8';

const GROWTH_BYTES = 4 * 1024 * 1024;

export class HeapTrimmer {
  private baseline = v8.getHeapStatistics().used_heap_size;

  constructor(
    private readonly gc: (() => void) | undefined = (globalThis as { gc?: () => void }).gc,
    private readonly growthBytes = GROWTH_BYTES,
  ) {}

  /** After a run: collect if the heap grew enough since the last collection. True if it did. */
  afterRun(): boolean {
    if (!this.gc) return false;
    if (v8.getHeapStatistics().used_heap_size < this.baseline + this.growthBytes) return false;
    this.gc();
    this.baseline = v8.getHeapStatistics().used_heap_size;
    return true;
  }
}
