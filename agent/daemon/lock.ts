/**
 * An exclusive lock file in the state directory, so that `pbx-agent sync` and the daemon never
 * reconcile at the same time. Holds the owner's pid; a lock whose owner is gone is taken over.
 */
import { open, readFile, unlink } from 'node:fs/promises';

export class LockTimeoutError extends Error {}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function acquireLock(file: string, waitMs: number): Promise<() => Promise<void>> {
  const deadline = Date.now() + waitMs;
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
    await new Promise((r) => setTimeout(r, 100));
  }
}
