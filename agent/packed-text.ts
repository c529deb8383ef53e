/**
 * Text the daemon keeps between runs, deflated: at 10,000 extensions the managed files are 6.7 MB
 * of text (pjsip.conf alone 5.4 MB) that an idle daemon would otherwise hold against its RSS
 * budget. Level 1 makes them 0.76 MB in all; measured with Node 20 on the bench's generated repo:
 * 17 ms to deflate, in libuv's thread pool rather than on the event loop, ~13 ms to inflate.
 */
import { promisify } from 'node:util';
import zlib from 'node:zlib';

const deflateRaw = promisify(zlib.deflateRaw);
const inflateRaw = promisify(zlib.inflateRaw);

/**
 * `text` deflated, or undefined when it is better kept as it is: shorter than `minLength`, not
 * well-formed (UTF-8 gives back exactly the string only without lone surrogates), or zlib failed
 * (out of memory), which costs only the saving.
 */
export async function packText(text: string, minLength: number): Promise<Buffer | undefined> {
  if (text.length < minLength || !isWellFormed(text)) return undefined;
  try {
    return await deflateRaw(text, { level: 1 });
  } catch {
    return undefined;
  }
}

/** The text packText() packed, off the event loop. */
export async function unpackText(packed: Buffer): Promise<string> {
  return (await inflateRaw(packed)).toString('utf8');
}

/** The text packText() packed, at once (for a caller that cannot wait: a synchronous render). */
export function unpackTextSync(packed: Buffer): string {
  return zlib.inflateRawSync(packed).toString('utf8');
}

/**
 * String.prototype.isWellFormed is in every supported Node.js line (V8 11.1+), but not in the
 * ES2023 lib we compile with.
 */
function isWellFormed(text: string): boolean {
  return (text as string & { isWellFormed(): boolean }).isWellFormed();
}
