/**
 * apply: write the files the plan says changed, and put earlier versions back on rollback.
 * Every write is atomic (files.ts), and a restored file gets a fresh mtime like any other write,
 * so Asterisk's size+mtime check cannot mistake it for the file it already has.
 */
import type { ReloadPlan } from '../plan/index.js';
import type { RenderedFile } from '../render/index.js';
import type { ManagedFileStore } from './files.js';

export { DirectoryFileStore, type ManagedFileStore } from './files.js';

/** The current text of each managed file (undefined when it does not exist). */
export async function readManagedFiles(store: ManagedFileStore, files: readonly RenderedFile[]): Promise<Map<string, string | undefined>> {
  const texts = await Promise.all(files.map((f) => store.read(f.path)));
  return new Map(files.map((f, i) => [f.path, texts[i]]));
}

/** Writes every file the plan creates or updates; returns their paths. */
export async function writeChangedFiles(store: ManagedFileStore, plan: ReloadPlan): Promise<string[]> {
  const changed = plan.files.filter((f) => f.action !== 'unchanged');
  await allWritten(changed.map((change) => store.writeAtomic(change.path, change.rendered.text)));
  return changed.map((change) => change.path);
}

/** Puts each file back as it was; a file that did not exist before is removed. */
export async function restoreFiles(store: ManagedFileStore, files: ReadonlyMap<string, string | undefined>): Promise<void> {
  await allWritten([...files].map(([rel, text]) => (text === undefined ? store.remove(rel) : store.writeAtomic(rel, text))));
}

/**
 * Waits for writes made side by side, then fails with the first one that failed. Each write is
 * atomic on its own, and nothing depends on the order among them (a run cut short leaves its
 * change pending for the next run); side by side, their fsyncs overlap instead of adding up.
 * Every write has settled when this returns or throws, so the caller never reads a file that
 * is still being written.
 */
export async function allWritten(writes: ReadonlyArray<Promise<void>>): Promise<void> {
  const results = await Promise.allSettled(writes);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}
