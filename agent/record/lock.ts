/**
 * One reconcile at a time, across every entry point (the daemon, `sync`, `apply`): an exclusive
 * lock file in the state directory. Two reconciles at once each take the other's in-progress
 * change for a crash and roll back to last-known-good, leaving Asterisk and the files apart.
 * The file holds the owner's pid; a lock whose owner is gone is taken over.
 */
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

export const LOCK_FILE = 'reconcile.lock';

export class LockTimeoutError extends Error {}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock, waiting up to `waitMs` for a live holder. `onWait` is called once, with the
 * holder's pid, if the lock is held when asked for (so that a command can say why it waits).
 */
export async function acquireLock(file: string, waitMs: number, onWait?: (ownerPid: number) => void): Promise<() => Promise<void>> {
  const deadline = Date.now() + waitMs;
  let told = false;
  for (;;) {
    try {
      const fh = await open(file, 'wx', 0o600);
      await fh.writeFile(String(process.pid));
      await fh.close();
      return async () => {
        const owner = await readFile(file, 'utf8').catch(() => '');
        if (owner.trim() === String(process.pid)) await unlink(file).catch(() => undefined);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(owner) || owner <= 0 || !alive(owner)) {
      // Left behind by a process that died (power loss, SIGKILL): take it over.
      await unlink(file).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) throw new LockTimeoutError(`another reconcile (pid ${owner}) is running; try again later`);
    if (!told) {
      told = true;
      onWait?.(owner);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs `fn` holding the state directory's reconcile lock (waiting up to 10 minutes for it). */
export async function withReconcileLock<T>(stateDir: string, onWait: ((ownerPid: number) => void) | undefined, fn: () => Promise<T>): Promise<T> {
  // A first `apply` or `sync` on a fresh host comes before anything made the state directory.
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const release = await acquireLock(path.join(stateDir, LOCK_FILE), 10 * 60_000, onWait);
  try {
    return await fn();
  } finally {
    await release();
  }
}
