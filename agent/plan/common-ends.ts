/**
 * How much two texts have in common at their start and at their end. A push nearly always
 * changes a few lines of a managed file of 250,000: the comparisons in plan/ look only at what
 * lies between, which keeps a one-extension change on a large PBX from re-indexing every line.
 */
export function commonEnds(before: string, after: string): { prefix: number; suffix: number } {
  const max = Math.min(before.length, after.length);
  // By halving: each probe is one native string comparison, ~22 of them for 3 MB.
  let lo = 0;
  let hi = max;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (before.slice(lo, mid) === after.slice(lo, mid)) lo = mid;
    else hi = mid - 1;
  }
  const prefix = lo;
  lo = 0;
  hi = max - prefix;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (before.slice(before.length - mid, before.length - lo) === after.slice(after.length - mid, after.length - lo)) lo = mid;
    else hi = mid - 1;
  }
  return { prefix, suffix: lo };
}
