/**
 * The managed files as last applied and verified: what the daemon's drift checks measure against.
 *
 * Kept compressed between checks. At 10,000 extensions the texts are 6.7 MB (pjsip.conf alone
 * 5.4 MB) that the idle daemon would otherwise hold for the next check, against an RSS budget of
 * 100 MB. Deflated at level 1 they are 0.76 MB; measured with Node 20 on the bench's generated
 * repo: 17 ms to compress, in libuv's thread pool rather than on the event loop, and ~13 ms to
 * read back, which only a drift check does (a file event or the schedule, never a push).
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { managedFileOf, splitManagedText, type AsteriskModule } from '../managed-files.js';

const deflateRaw = promisify(zlib.deflateRaw);
const inflateRaw = promisify(zlib.inflateRaw);

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
    return Buffer.isBuffer(value) ? (await inflateRaw(value)).toString('utf8') : value;
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
 * Replaces the large texts of `held` by their compressed form. A newer replace() has its own map,
 * so a compression that finishes late never touches the set in use. If compressing fails (out of
 * memory), the text simply stays as it is.
 */
async function compressInPlace(held: Map<string, string | Buffer | undefined>): Promise<void> {
  for (const [rel, value] of held) {
    if (typeof value !== 'string' || value.length < COMPRESS_FROM_BYTES) continue;
    try {
      held.set(rel, await deflateRaw(value, { level: 1 }));
    } catch {
      // Kept uncompressed: correct, only larger.
    }
  }
}
