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
  const out = new Map<string, string | undefined>();
  for (const f of files) out.set(f.path, await store.read(f.path));
  return out;
}

/** Writes every file the plan creates or updates; returns their paths. */
export async function writeChangedFiles(store: ManagedFileStore, plan: ReloadPlan): Promise<string[]> {
  const written: string[] = [];
  for (const change of plan.files) {
    if (change.action === 'unchanged') continue;
    await store.writeAtomic(change.path, change.rendered.text);
    written.push(change.path);
  }
  return written;
}

/** Puts each file back as it was; a file that did not exist before is removed. */
export async function restoreFiles(store: ManagedFileStore, files: ReadonlyMap<string, string | undefined>): Promise<void> {
  for (const [rel, text] of files) {
    if (text === undefined) await store.remove(rel);
    else await store.writeAtomic(rel, text);
  }
}
