/**
 * The managed files as last applied and verified: what the daemon's drift checks measure against.
 * Kept compressed between checks (agent/packed-text.ts); only a drift check reads them back (a
 * file event or the schedule, never a push).
 */
import { managedFileOf, splitManagedText, type AsteriskModule } from '../managed-files.js';
import { packText, unpackText } from '../packed-text.js';

/** Texts shorter than this stay as they are: compressing them saves nothing worth a buffer. */
const COMPRESS_FROM_BYTES = 4096;

export class AppliedTexts {
  /** path → text (not compressed yet, or small), compressed UTF-8, or undefined = absent. */
  private texts = new Map<string, string | Buffer | undefined>();

  /**
   * Takes the texts of a run (or of the disk at start-up). They are used as given at once and
   * compressed in the background; the promise settles when that is done, for tests.
   */
  replace(texts: ReadonlyMap<string, string | undefined>): Promise<void> {
    const held = new Map<string, string | Buffer | undefined>(texts);
    this.texts = held;
    return compressInPlace(held);
  }

  /** The applied text of a managed file, undefined when it was absent or is not known. */
  async get(rel: string): Promise<string | undefined> {
    const value = this.texts.get(rel);
    return Buffer.isBuffer(value) ? unpackText(value) : value;
  }

  /** The body (header removed) of `module`'s file, '' when the file was absent. */
  async body(module: AsteriskModule): Promise<string> {
    return splitManagedText((await this.get(managedFileOf(module).path)) ?? '').body;
  }

  /** Bytes held for the texts as stored now (a string counted by its UTF-8 length): what the memory claim rests on. */
  storedBytes(): number {
    let sum = 0;
    for (const value of this.texts.values()) sum += value === undefined ? 0 : Buffer.isBuffer(value) ? value.length : Buffer.byteLength(value);
    return sum;
  }
}

/**
 * Replaces the texts of `held` worth it by their compressed form. A newer replace() has its own
 * map, so a compression that finishes late never touches the set in use.
 */
async function compressInPlace(held: Map<string, string | Buffer | undefined>): Promise<void> {
  for (const [rel, value] of held) {
    if (typeof value !== 'string') continue;
    const packed = await packText(value, COMPRESS_FROM_BYTES);
    if (packed) held.set(rel, packed);
  }
}
