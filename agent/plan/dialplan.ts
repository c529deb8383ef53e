/**
 * plan, the dialplan part: which extensions of the agent's dial-by-number context a change adds,
 * changes or removes, what each should look like, and whether Asterisk can be told so one entry at
 * a time instead of re-reading extensions.conf. Pure.
 *
 * Why: `module reload pbx_config` re-parses the whole file and rebuilds every context, and its
 * cost grows faster than the file (a real Asterisk 20.6 took 0.08 s at 1,000 extensions and
 * 5.8–6.9 s at 10,000); while it runs, Asterisk's one reload lock answers every other reload
 * "A reload is in progress". AMI's DialplanExtensionAdd / DialplanExtensionRemove (pbx_config.c,
 * since 13) change one extension in place; Asterisk registers them under pbx_config, as if read
 * from the file (reference/asterisk-20 transcript p_), and extensions.conf is still written, so a
 * restart or a later reload loads the same dialplan.
 */
import { EXTENSIONS_CONTEXT } from '../render/extensions.js';
import { commonEnds } from './common-ends.js';

/** One priority of an extension: `1`, `2`, … or the hint. */
export interface DialplanEntry {
  priority: number | 'hint';
  /** For the hint, the device it watches (`PJSIP/1001`); otherwise the application. */
  application: string;
  data: string;
}

/** One AMI action: set (DialplanExtensionAdd with Replace) or remove (DialplanExtensionRemove). */
export type DialplanEdit =
  | ({ kind: 'set'; context: string; extension: string } & DialplanEntry)
  | { kind: 'remove'; context: string; extension: string; priority?: number | 'hint' };

export interface DialplanComparison {
  /** Numbers of the dial-by-number context, by what the change does to them. */
  added: string[];
  changed: string[];
  removed: string[];
  /** What each added or changed number should look like live. */
  expected: Map<string, DialplanEntry[]>;
  /**
   * The AMI actions that make the live dialplan what the new file says, when that can be done
   * entry by entry; absent when the change needs a reload (see `reloadReason`).
   */
  edits?: DialplanEdit[];
  /** Why a reload is needed instead of edits (absent when edits are possible). */
  reloadReason?: string;
  /** Nothing but extensions of the dial-by-number context differs (no context, include or room). */
  onlyExtensions: boolean;
}

/**
 * More changed extensions than this and one reload is cheaper than the actions: measured on a real
 * Asterisk, an action takes a few milliseconds and a reload about 0.2 s per 1,000 extensions.
 */
export function liveEditLimit(extensions: number): number {
  return Math.max(10, Math.floor(extensions / 50));
}

interface ParsedDialplan {
  /** Everything outside the dial-by-number context's extensions, in order, to compare as text. */
  rest: string;
  /** The dial-by-number context's lines, grouped by extension. */
  blocks: Map<string, string[]>;
}

/** Splits an extensions.conf body as rendered by render/extensions.ts (or lines of its extensions context). */
function parse(body: string, inside = false): ParsedDialplan {
  const rest: string[] = [];
  const blocks = new Map<string, string[]>();
  let inExtensions = inside;
  let current: string[] | undefined;
  for (const line of body.split('\n')) {
    if (line.startsWith('[')) {
      inExtensions = line === `[${EXTENSIONS_CONTEXT}]`;
      current = undefined;
      rest.push(line);
      continue;
    }
    if (inExtensions) {
      const exten = /^exten => ([^,]+),/.exec(line);
      if (exten) {
        const number = exten[1]!;
        current = blocks.get(number);
        if (!current) blocks.set(number, (current = []));
        current.push(line);
        continue;
      }
      if (line.startsWith('same => ') && current) {
        current.push(line);
        continue;
      }
      current = undefined;
    }
    rest.push(line);
  }
  return { rest: rest.join('\n'), blocks };
}

/**
 * The entries of one extension's lines, as pbx_config would number them; undefined when a line
 * uses something a single AMI action cannot express (a label, a pattern, a priority offset).
 */
function entriesOf(lines: readonly string[]): DialplanEntry[] | undefined {
  const out: DialplanEntry[] = [];
  let last = 0;
  for (const line of lines) {
    const m = /^(?:exten => [^,]+,|same => )([^,]+),(.*)$/.exec(line);
    if (!m) return undefined;
    const [, priorityText, appText] = m as unknown as [string, string, string];
    let priority: number | 'hint';
    if (priorityText === 'hint') priority = 'hint';
    else if (priorityText === 'n') priority = ++last;
    else if (/^[1-9][0-9]*$/.test(priorityText)) priority = last = Number(priorityText);
    else return undefined;
    if (priority === 'hint') {
      out.push({ priority, application: appText, data: '' });
      continue;
    }
    // `App(data)`: pbx_config takes the text up to the first `(` as the application and strips
    // the last `)` from the rest (pbx_config.c pbx_load_config).
    const paren = appText.indexOf('(');
    if (paren < 0) out.push({ priority, application: appText, data: '' });
    else if (appText.endsWith(')')) out.push({ priority, application: appText.slice(0, paren), data: appText.slice(paren + 1, -1) });
    else return undefined;
  }
  return out;
}

function sameLines(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((line, i) => line === b[i]);
}

function sameEntry(a: DialplanEntry, b: DialplanEntry): boolean {
  return a.priority === b.priority && a.application === b.application && a.data === b.data;
}

/** Compares two extensions.conf bodies and plans the edits that turn the first into the second live. */
export function compareDialplan(before: string, after: string): DialplanComparison {
  // Only the extensions between the texts' common start and end are parsed when that is all that
  // differs (nearly every push); otherwise, or if an extension moved, the whole of both.
  const region = differingExtensions(before, after);
  if (region) {
    const old = parse(before.slice(region.start, region.beforeEnd), true);
    const next = parse(after.slice(region.start, region.afterEnd), true);
    const comparison = compareParsed(before, after, old, next, countExtensions(after));
    // Each look elsewhere scans a whole text: past a handful, parsing everything is cheaper.
    const few = comparison.added.length + comparison.removed.length <= 20;
    const moved = !few || comparison.added.some((n) => before.includes(`\nexten => ${n},`)) || comparison.removed.some((n) => after.includes(`\nexten => ${n},`));
    if (!moved && old.rest === '' && next.rest === '') return comparison;
  }
  return compareParsed(before, after, parse(before), parse(after), countExtensions(after));
}

/** Extensions with a hint: every extension the agent renders has one. */
function countExtensions(body: string): number {
  let n = 0;
  for (let at = body.indexOf(',hint,'); at >= 0; at = body.indexOf(',hint,', at + 1)) n++;
  return n;
}

const BLOCK_START = /^exten => [^,]+,1,/;

/**
 * Where two extensions.conf bodies differ, widened to whole extensions (from an `exten => N,1,`
 * line to the next one), when that lies inside the dial-by-number context of both; undefined
 * when the difference reaches anything else (then everything is compared).
 */
function differingExtensions(before: string, after: string): { start: number; beforeEnd: number; afterEnd: number } | undefined {
  if (before === '' || after === '') return undefined;
  const { prefix, suffix } = commonEnds(before, after);
  const lineAt = (text: string, at: number) => text.slice(at, (text.indexOf('\n', at) + 1 || text.length + 1) - 1);
  let start = prefix === 0 ? 0 : before.lastIndexOf('\n', prefix - 1) + 1;
  let end = before.indexOf('\n', Math.max(before.length - suffix - 1, start));
  end = end < 0 ? before.length : end + 1;
  // Back to the first line of the extension the difference starts in, on to the next one's.
  while (start > 0 && !BLOCK_START.test(lineAt(before, start))) {
    if (!/^(exten|same) => /.test(lineAt(before, start))) return undefined;
    start = before.lastIndexOf('\n', start - 2) + 1;
  }
  while (end < before.length && /^(exten|same) => /.test(lineAt(before, end)) && !BLOCK_START.test(lineAt(before, end))) {
    end = before.indexOf('\n', end) + 1 || before.length;
  }
  const keep = before.length - end;
  if (after.length - keep < start) return undefined;
  // Both parts must lie in [pbx-agent-extensions]: after its header, before the next section.
  const inside = (text: string, from: number, to: number) => {
    const header = text.lastIndexOf(`\n[${EXTENSIONS_CONTEXT}]\n`, from);
    const nextSection = text.indexOf('\n[', header + 1);
    return header >= 0 && (text.lastIndexOf('\n[', from) === header) && (nextSection < 0 || nextSection + 1 >= to);
  };
  if (!inside(before, start, end) || !inside(after, start, after.length - keep)) return undefined;
  return { start, beforeEnd: end, afterEnd: after.length - keep };
}

function compareParsed(before: string, after: string, old: ParsedDialplan, next: ParsedDialplan, extensions: number): DialplanComparison {
  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const [number, lines] of next.blocks) {
    const was = old.blocks.get(number);
    if (was === undefined) added.push(number);
    else if (!sameLines(was, lines)) changed.push(number);
  }
  for (const number of old.blocks.keys()) if (!next.blocks.has(number)) removed.push(number);

  const expected = new Map<string, DialplanEntry[]>();
  let unexpressible: string | undefined;
  for (const number of [...added, ...changed]) {
    const entries = entriesOf(next.blocks.get(number)!);
    if (entries) expected.set(number, entries);
    else unexpressible ??= number;
  }
  const comparison: DialplanComparison = { added, changed, removed, expected, onlyExtensions: before !== '' && old.rest === next.rest };

  const touched = added.length + changed.length + removed.length;
  if (before === '') comparison.reloadReason = 'extensions.conf is new';
  else if (old.rest !== next.rest) comparison.reloadReason = 'the change is not only to extensions of the dial-by-number context';
  else if (unexpressible !== undefined) comparison.reloadReason = `extension ${unexpressible} uses a label or pattern`;
  else if (touched > liveEditLimit(extensions)) comparison.reloadReason = `${touched} extensions change (one reload is cheaper than ${touched} sets of actions)`;
  else comparison.edits = editsFor(comparison, old.blocks);
  return comparison;
}

function editsFor(comparison: DialplanComparison, oldBlocks: ReadonlyMap<string, string[]>): DialplanEdit[] {
  const context = EXTENSIONS_CONTEXT;
  const edits: DialplanEdit[] = [];
  for (const number of [...comparison.added, ...comparison.changed]) {
    const want = comparison.expected.get(number)!;
    const had = entriesOf(oldBlocks.get(number) ?? []) ?? [];
    // Replace in place rather than remove and add: a hint that disappears, even briefly, ends
    // every phone's subscription to it (busy-lamp fields go dark until they subscribe again).
    for (const entry of want) {
      if (!had.some((h) => sameEntry(h, entry))) edits.push({ kind: 'set', context, extension: number, ...entry });
    }
    for (const h of had) {
      if (!want.some((w) => w.priority === h.priority)) edits.push({ kind: 'remove', context, extension: number, priority: h.priority });
    }
  }
  for (const number of comparison.removed) edits.push({ kind: 'remove', context, extension: number });
  return edits;
}
