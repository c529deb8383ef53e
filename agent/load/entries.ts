/**
 * Where each extension of an extensions file is in its text, for the common plain layout:
 *
 *   # comments
 *   extensions:
 *     - number: "1001"
 *       name: Alice
 *     - number: "1002"
 *
 * A push nearly always changes one entry of hundreds in a file. An entry whose text is the same as
 * one of the previous load's entries has the same data, so only the changed entries are parsed
 * and validated again (agent/load/index.ts), instead of the whole file.
 *
 * Why a span is exactly one entry's text: every entry of a block sequence starts on a line of its
 * own, at the sequence's indentation, with "-" and a space or the line's end (YAML 1.2, 8.2.1).
 * Such a line can be something else only inside a quoted scalar or a flow collection that runs
 * on from an earlier line (block scalars must be indented further), so the lines found here are
 * every entry's start and maybe more. The caller makes sure there are no more: a span standalone
 * must parse to exactly one entry (an unclosed quote or bracket does not parse), or, for a file
 * parsed whole, there must be as many spans as entries.
 */

/** The entries' spans: [start, end) offsets into the text, two numbers per entry, in order. */
export type EntrySpans = Uint32Array;

/** `extensions:` and nothing else, but maybe a comment. */
const EXTENSIONS_KEY = /^extensions:(?: +#.*)?$/;
const BLANK = /^ *$/;

/**
 * The spans of the file's entries, or undefined when the file does not have the plain layout: any
 * other key, a tab, a carriage return or a byte-order mark, a line less indented than the entries
 * that is not a comment, or no entry at all.
 */
export function entrySpans(text: string): EntrySpans | undefined {
  if (/[\t\r\uFEFF]/.test(text)) return undefined;
  const starts: number[] = [];
  let indent = -1;
  let sawKey = false;
  let at = 0;
  while (at < text.length) {
    const nl = text.indexOf('\n', at);
    const end = nl < 0 ? text.length : nl;
    const line = text.slice(at, end);
    const spaces = line.length - line.trimStart().length;
    const first = line[spaces];
    if (BLANK.test(line) || first === '#') {
      // Blank lines and comments belong to whatever they are in.
    } else if (indent < 0) {
      // The head: `extensions:` once, then the first entry fixes the indentation.
      if (!sawKey) {
        if (!EXTENSIONS_KEY.test(line)) return undefined;
        sawKey = true;
      } else if (isEntryStart(line, spaces)) {
        indent = spaces;
        starts.push(at);
      } else {
        return undefined;
      }
    } else if (spaces === indent && isEntryStart(line, spaces)) {
      starts.push(at);
    } else if (spaces <= indent) {
      return undefined;
    }
    at = end + 1;
  }
  if (starts.length === 0) return undefined;
  const spans = new Uint32Array(starts.length * 2);
  starts.forEach((start, i) => {
    spans[2 * i] = start;
    spans[2 * i + 1] = starts[i + 1] ?? text.length;
  });
  return spans;
}

function isEntryStart(line: string, spaces: number): boolean {
  return line[spaces] === '-' && (line.length === spaces + 1 || line[spaces + 1] === ' ');
}

/** How many entries the spans mark. */
export function entryCount(spans: EntrySpans): number {
  return spans.length / 2;
}

/** The text of entry `i`. */
export function entryText(text: string, spans: EntrySpans, i: number): string {
  return text.slice(spans[2 * i]!, spans[2 * i + 1]!);
}
