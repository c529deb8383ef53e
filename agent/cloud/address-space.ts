/**
 * IPv4 and IPv6 networks as ranges of integers (bigint, so that IPv6's 128 bits fit), and the
 * one question the cloud checks ask of them: which part of a range do some networks leave
 * uncovered? That is how "open to the world" is decided: by the addresses a set of rules lets
 * in, not by spelling, so `0.0.0.0/1` + `128.0.0.0/1` is the whole IPv4 internet just like
 * `0.0.0.0/0`, and `::/1` + `8000::/1` the whole IPv6 one.
 */

export type Family = 4 | 6;

export interface AddressRange {
  family: Family;
  /** First and last address, inclusive. */
  start: bigint;
  end: bigint;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Every address of a family. */
export const WORLD: Readonly<Record<Family, AddressRange>> = {
  4: { family: 4, start: 0n, end: 2n ** 32n - 1n },
  6: { family: 6, start: 0n, end: 2n ** 128n - 1n },
};

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256n + BigInt(p);
  }
  return n;
}

/** RFC 4291 section 2.2 text forms: eight groups, `::` for a run of zeros, an IPv4 tail. */
function parseIpv6(text: string): bigint | undefined {
  let head = text;
  const tail: string[] = [];
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.slice(lastColon + 1).includes('.')) {
    const v4 = parseIpv4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    tail.push((v4 >> 16n).toString(16), (v4 & 0xffffn).toString(16));
    head = text.slice(0, lastColon + 1);
    // "::1.2.3.4" leaves "::", "a:b:c:d:e:f:1.2.3.4" leaves "a:b:c:d:e:f:": drop a lone trailing colon.
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const left = groups(halves[0]!);
  const right = [...(halves.length === 2 ? groups(halves[1]!) : []), ...tail];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  let n = 0n;
  for (const g of [...left, ...Array<string>(Math.max(0, missing)).fill('0'), ...right]) {
    if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
    n = (n << 16n) + BigInt(parseInt(g, 16));
  }
  return n;
}

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (a /32 or /128). Undefined when malformed. */
export function parseCidr(cidr: string): AddressRange | undefined {
  const [ip, bitsText, extra] = cidr.trim().split('/');
  if (ip === undefined || extra !== undefined) return undefined;
  const family: Family = ip.includes(':') ? 6 : 4;
  const base = family === 4 ? parseIpv4(ip) : parseIpv6(ip);
  const max = BITS[family];
  const bits = bitsText === undefined ? max : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (base === undefined || !Number.isInteger(bits) || bits < 0 || bits > max) return undefined;
  const size = 2n ** BigInt(max - bits);
  const start = base - (base % size);
  return { family, start, end: start + size - 1n };
}

/** How many addresses a range holds. */
export function sizeOf(r: AddressRange): bigint {
  return r.end - r.start + 1n;
}

/** Parts of `target` that none of `covers` (same family) contains, as sorted disjoint ranges. */
export function uncovered(target: AddressRange, covers: readonly AddressRange[]): AddressRange[] {
  const sorted = covers
    .filter((c) => c.family === target.family && c.end >= target.start && c.start <= target.end)
    .sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const gaps: AddressRange[] = [];
  let next = target.start;
  for (const c of sorted) {
    if (c.start > next) gaps.push({ family: target.family, start: next, end: c.start - 1n < target.end ? c.start - 1n : target.end });
    if (c.end + 1n > next) next = c.end + 1n;
    if (next > target.end) return gaps;
  }
  if (next <= target.end) gaps.push({ family: target.family, start: next, end: target.end });
  return gaps;
}

/** Whether `covers` together contain every address of `target`. */
export function covered(target: AddressRange, covers: readonly AddressRange[]): boolean {
  return uncovered(target, covers).length === 0;
}
