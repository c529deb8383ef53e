/**
 * Managed files edited by hand. chokidar watches /etc/asterisk/pbx-agent/; a file whose text is
 * not what the agent last applied (and verified) is drift. The agent's own writes never count:
 * the expected texts are refreshed from disk after each run.
 */
import { watch, type FSWatcher } from 'chokidar';
import path from 'node:path';
import { unifiedDiff } from '../plan/diff.js';
import { redactSecrets } from '../plan/index.js';

export interface FileDrift {
  path: string;
  kind: 'modified' | 'deleted' | 'created';
  /** A short unified diff, credentials and voicemail PINs redacted. */
  diff: string;
}

export function compareManagedFile(rel: string, expected: string | undefined, actual: string | undefined, maxLines = 40): FileDrift | undefined {
  if (expected === actual) return undefined;
  const kind = actual === undefined ? 'deleted' : expected === undefined ? 'created' : 'modified';
  const diff = unifiedDiff(`applied/${rel}`, `on-disk/${rel}`, redactSecrets(expected ?? '', rel), redactSecrets(actual ?? '', rel), { context: 1, maxLines });
  return { path: rel, kind, diff };
}

/** Watches the managed files; `onEvent` gets the path relative to the config dir. */
export async function watchManagedFiles(configDir: string, relPaths: readonly string[], onEvent: (rel: string) => void): Promise<FSWatcher> {
  // The directories, not the files: every write replaces a file (rename), and a watch on a file
  // would stay on the replaced one.
  const dirs = [...new Set(relPaths.map((p) => path.resolve(configDir, path.dirname(p))))];
  // Only the managed files, not every temp file a write makes on its way (apply/files.ts): each
  // would cost the daemon an add, an unlink and a wait for its writes to settle, while it applies.
  const watched = new Set([...dirs, ...relPaths.map((p) => path.resolve(configDir, p))]);
  const watcher = watch(dirs, {
    depth: 0,
    ignoreInitial: true,
    ignored: (file: string) => !watched.has(path.resolve(file)),
    // Editors save in several writes; wait until the file is still.
    awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
  });
  const handler = (file: string) => {
    const rel = path.relative(configDir, file);
    if (relPaths.includes(rel)) onEvent(rel);
  };
  watcher.on('add', handler).on('change', handler).on('unlink', handler);
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  return watcher;
}
