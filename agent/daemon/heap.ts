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

  constructor(
    private readonly gc: ExposedGc | undefined = (globalThis as { gc?: ExposedGc }).gc,
    private readonly growthBytes = GROWTH_BYTES,
    private readonly options = takesGcOptions(),
  ) {}

  /** After a run: collect if the heap grew enough since the last collection. True if it did. */
  afterRun(): boolean {
    if (!this.gc) return false;
    if (v8.getHeapStatistics().used_heap_size < this.baseline + this.growthBytes) return false;
    if (this.options) this.gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
    else this.gc();
    this.baseline = v8.getHeapStatistics().used_heap_size;
    return true;
  }
}
