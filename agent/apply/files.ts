/**
 * The filesystem behind a small interface: read the managed files, write them atomically.
 *
 * A write is: temp file in the same directory, fsync, rename over the target, fsync the
 * directory. A crash at any point leaves the old file or the new one, never a torn one. The
 * mtime is always the time of writing: Asterisk skips re-reading a file whose size and mtime are
 * unchanged, so a preserved mtime could hide a same-length change (DESIGN.md, Asterisk facts).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Managed files hold credentials (md5): readable by Asterisk's group, not by the world. */
export const MANAGED_FILE_MODE = 0o640;

export interface ManagedFileStore {
  /** The root these paths are relative to (e.g. /etc/asterisk). */
  readonly root: string;
  read(relPath: string): Promise<string | undefined>;
  writeAtomic(relPath: string, text: string): Promise<void>;
  remove(relPath: string): Promise<void>;
  /** Removes temp files a killed writer left in `relDir`; returns their names. */
  removeLeftovers(relDir: string): Promise<string[]>;
}

/** `.pjsip.conf.1a2b3c4d5e6f.tmp`: what writeAtomic writes before its rename. */
const TEMP_NAME = /^\..+\.[0-9a-f]{12}\.tmp$/;

/** Node names no file for a failed write through a handle (ENOSPC, EIO): say which file it was. */
function withPath(e: unknown, file: string): unknown {
  const err = e as NodeJS.ErrnoException;
  if (!(err instanceof Error) || err.path !== undefined) return e;
  err.path = file;
  err.message = `${err.message} (writing ${file})`;
  return err;
}

function inside(root: string, relPath: string): string {
  const abs = path.resolve(root, relPath);
  if (abs !== root && !abs.startsWith(root + path.sep)) throw new Error(`path ${relPath} escapes ${root}`);
  return abs;
}

export interface FileStoreOptions {
  /** Mode of written files (default 640). */
  mode?: number;
  /** Mode of directories created on the way (default 750). */
  dirMode?: number;
  /** Group id given to written files, e.g. asterisk's, so Asterisk can read a 640 file. */
  gid?: number;
}

export class DirectoryFileStore implements ManagedFileStore {
  readonly root: string;
  private readonly mode: number;
  private readonly dirMode: number;
  private readonly gid: number | undefined;

  constructor(root: string, options: FileStoreOptions = {}) {
    this.root = path.resolve(root);
    this.mode = options.mode ?? MANAGED_FILE_MODE;
    this.dirMode = options.dirMode ?? 0o750;
    this.gid = options.gid;
  }

  /** Removes a managed file (used when rolling back to a state in which it did not exist). */
  async remove(relPath: string): Promise<void> {
    await rm(inside(this.root, relPath), { force: true });
  }

  async removeLeftovers(relDir: string): Promise<string[]> {
    const dir = inside(this.root, relDir);
    const names = await readdir(dir).catch(() => [] as string[]);
    const leftovers = names.filter((n) => TEMP_NAME.test(n));
    // A kill -9 between open and rename leaves a full-size temp file, credentials included.
    for (const n of leftovers) await rm(path.join(dir, n), { force: true });
    return leftovers;
  }

  async read(relPath: string): Promise<string | undefined> {
    const abs = inside(this.root, relPath);
    try {
      return await readFile(abs, 'utf8');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') return undefined;
      // Node names no file when the read itself fails (EISDIR, EIO): the operator needs to know which.
      err.path ??= abs;
      throw err;
    }
  }

  async writeAtomic(relPath: string, text: string): Promise<void> {
    const target = inside(this.root, relPath);
    const dir = path.dirname(target);
    await mkdir(dir, { recursive: true, mode: this.dirMode });
    const tmp = path.join(dir, `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tmp, 'wx', this.mode).catch((e: unknown) => {
      throw withPath(e, target);
    });
    try {
      await fh.writeFile(text, 'utf8');
      // The umask may have narrowed the mode given to open(); set it exactly. The group comes
      // before the rename: a file Asterisk cannot read is silently skipped by #tryinclude.
      if (this.gid !== undefined) await fh.chown(-1, this.gid);
      await fh.chmod(this.mode);
      await fh.sync();
    } catch (e) {
      await fh.close();
      await rm(tmp, { force: true });
      throw withPath(e, target);
    }
    await fh.close();
    try {
      await rename(tmp, target);
    } catch (e) {
      await rm(tmp, { force: true });
      throw withPath(e, target);
    }
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}

