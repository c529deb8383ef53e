/**
 * YAML parsing: plain data fast, and positions when a message needs them, so that any field path
 * can be mapped back to file:line:col.
 */
import { CORE_SCHEMA, load as loadYaml } from 'js-yaml';
import { createRequire } from 'node:module';
import type { Document, LineCounter, Node } from 'yaml';

/**
 * `yaml` is loaded on first use, synchronously: a daemon whose config is valid never needs node
 * positions, and not loading the library keeps about 9 MB out of its resident memory.
 */
let yamlLib: typeof import('yaml') | undefined;
function yaml(): typeof import('yaml') {
  return (yamlLib ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));
}
import type { Position } from '../model.js';
import { fileIssue, type ConfigIssue } from './issues.js';
import type { RepoFile } from './read-repo.js';

/**
 * Alias expansion budget handed to `yaml`: a "billion laughs" document is refused instead of
 * expanding into gigabytes. Real config repos use a handful of anchors at most.
 */
const MAX_ALIAS_COUNT = 100;

export interface ParsedYaml {
  file: string;
  /** The plain data. */
  data: unknown;
  /**
   * The document with node positions, parsed on first use: it is only needed to say where a
   * problem is, and parsing with positions costs ten times more than parsing for data.
   */
  positioned(): { doc: Document; lineCounter: LineCounter };
}

/**
 * Keys whose scalar values must stay text even when YAML would read them as numbers: `0100`
 * as an extension number, or an md5 credential that happens to be all digits (or digits and one
 * `e`, which YAML reads as a float).
 */
const TEXT_KEYS = new Set(['number', 'md5']);
/** Every value in these maps is text too (feature codes such as `0700`). */
const TEXT_MAPS = new Set(['feature_codes']);

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

/**
 * The fast path: js-yaml reads plain data about ten times faster than `yaml` builds a positioned
 * document (10,000 extensions: ~40 ms against ~500 ms). It is taken only where both give the same
 * data and nothing needs the careful path: no anchors or aliases (js-yaml shares aliased nodes
 * instead of bounding their expansion), no parse error (`yaml` words and locates those), and no
 * unquoted number or md5 (only the positioned parse keeps `0100` as written). Both use the
 * YAML 1.2 core schema, so `no` stays a string and dates stay text.
 */
function parseFast(file: RepoFile): unknown | typeof NOT_FAST {
  if (/[&*]/.test(file.text)) return NOT_FAST;
  let data: unknown;
  try {
    data = loadYaml(file.text, { schema: CORE_SCHEMA, json: false });
  } catch {
    return NOT_FAST;
  }
  if (hasNumericTextField(data)) return NOT_FAST;
  return data;
}
const NOT_FAST = Symbol('not-fast');

function hasNumericTextField(data: unknown): boolean {
  if (data === null || typeof data !== 'object') return false;
  const root = data as Record<string, unknown>;
  const exts = root.extensions;
  const numericText = (e: unknown) =>
    e !== null && typeof e === 'object' && [...TEXT_KEYS].some((k) => typeof (e as Record<string, unknown>)[k] === 'number');
  if (Array.isArray(exts) && exts.some(numericText)) return true;
  const dialplan = root.dialplan as Record<string, unknown> | undefined;
  const codes = dialplan && typeof dialplan === 'object' ? dialplan.feature_codes : undefined;
  return codes !== null && typeof codes === 'object' && Object.values(codes as object).some((v) => typeof v === 'number');
}

/**
 * One entry of an extensions file alone (its text from agent/load/entries.ts), by the fast path:
 * its data, or undefined when it does not parse to exactly one entry or needs the careful path
 * (the whole file is then parsed as usual, which words and locates any problem).
 */
export function parseEntryFast(text: string): unknown {
  const data = parseFast({ path: '', text });
  if (data === NOT_FAST || !Array.isArray(data) || data.length !== 1) return undefined;
  const asFile = { extensions: data };
  if (hasNumericTextField(asFile) || tooDeep(asFile)) return undefined;
  return data[0];
}

export function parsePositioned(text: string): { doc: Document; lineCounter: LineCounter } {
  const { LineCounter, parseDocument, visit, isPair, isScalar } = yaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true, version: '1.2' });
  // An extension number written without quotes (`number: 0100`) is a YAML integer; keep the digits
  // exactly as written instead of silently turning it into 100.
  visit(doc, {
    Pair(_key, pair, ancestors) {
      const owner = ancestors[ancestors.length - 2];
      const inTextMap = isPair(owner) && isScalar(owner.key) && TEXT_MAPS.has(String(owner.key.value));
      if (isScalar(pair.key) && (inTextMap || TEXT_KEYS.has(String(pair.key.value))) && isScalar(pair.value)) {
        const v = pair.value;
        if (typeof v.value === 'number' && typeof v.source === 'string') v.value = v.source;
      }
    },
  });
  return { doc, lineCounter };
}

/**
 * Lists and maps nested deeper than this are refused: the deepest field of the contract is five
 * levels down (extensions[0].voicemail.email), and both YAML parsers recurse once per level, so
 * thousands of levels would end in "Maximum call stack size exceeded" instead of a message.
 */
export const MAX_NESTING = 32;

function nestedTooDeep(file: string, where: Position = { line: 0, column: 0 }): ConfigIssue {
  return {
    severity: 'error',
    file,
    line: where.line,
    column: where.column,
    field: '',
    message: `YAML is nested too deep (more than ${MAX_NESTING} levels of lists and maps; the deepest field pbx-agent reads is 5 levels down)`,
  };
}

/** Deeper than MAX_NESTING? Walked with an explicit stack, so that depth itself cannot overflow it. */
function tooDeep(data: unknown): boolean {
  const stack: Array<[unknown, number]> = [[data, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth >= MAX_NESTING) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}

const STACK_OVERFLOW = /maximum call stack size exceeded/i;

export function parseYaml(file: RepoFile): { parsed?: ParsedYaml; issues: ConfigIssue[] } {
  const fast = parseFast(file);
  if (fast !== NOT_FAST && tooDeep(fast)) return { issues: [nestedTooDeep(file.path)] };
  if (fast !== NOT_FAST) {
    let positioned: { doc: Document; lineCounter: LineCounter } | undefined;
    return {
      parsed: { file: file.path, data: fast, positioned: () => (positioned ??= parsePositioned(file.text)) },
      issues: [],
    };
  }

  let positioned: ReturnType<typeof parsePositioned>;
  try {
    positioned = parsePositioned(file.text);
  } catch (e) {
    if (e instanceof RangeError || STACK_OVERFLOW.test(String(e))) return { issues: [nestedTooDeep(file.path)] };
    throw e;
  }
  const { doc, lineCounter } = positioned;
  const issues: ConfigIssue[] = [];
  for (const err of doc.errors) {
    const pos = err.linePos?.[0];
    // The parser gives up once per level it unwinds; one message says it all.
    if (STACK_OVERFLOW.test(err.message)) return { issues: [nestedTooDeep(file.path, pos ? { line: pos.line, column: pos.col } : undefined)] };
    issues.push({
      severity: 'error',
      file: file.path,
      line: pos?.line ?? 0,
      column: pos?.col ?? 0,
      field: '',
      message: `YAML syntax: ${firstLine(err.message)}`,
    });
  }
  if (issues.length > 0) return { issues };

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (STACK_OVERFLOW.test(msg)) return { issues: [nestedTooDeep(file.path)] };
    if (/excessive alias count/i.test(msg)) {
      issues.push(fileIssue(file.path, `YAML aliases expand too far (more than ${MAX_ALIAS_COUNT} alias uses); write the values out instead`));
      return { issues };
    }
    // An unresolved alias is nearly always an unquoted feature code such as *97.
    let where: Position = { line: 0, column: 0 };
    const { visit } = yaml();
    visit(doc, {
      Alias(_key, node) {
        const p = node.range ? lineCounter.linePos(node.range[0]) : undefined;
        if (p && where.line === 0) where = { line: p.line, column: p.col };
        return visit.BREAK;
      },
    });
    issues.push({
      severity: 'error',
      file: file.path,
      line: where.line,
      column: where.column,
      field: '',
      message: /alias/i.test(msg)
        ? `YAML syntax: ${firstLine(msg)}; a value starting with "*" or "&" must be quoted, e.g. "*97"`
        : `YAML could not be read: ${firstLine(msg)}`,
    });
    return { issues };
  }
  if (tooDeep(data)) return { issues: [nestedTooDeep(file.path)] };
  return { parsed: { file: file.path, data, positioned: () => ({ doc, lineCounter }) }, issues };
}

function position(lineCounter: LineCounter, node: Node | null | undefined): Position | undefined {
  const offset = node?.range?.[0];
  if (offset === undefined) return undefined;
  const p = lineCounter.linePos(offset);
  return { line: p.line, column: p.col };
}

/**
 * The position of the value at `path`, or of the deepest node that exists along it (for a
 * missing field: the map that should have held it). `keyOf` asks for the key's own position.
 */
export function locate(parsed: ParsedYaml, path: readonly PropertyKey[], keyOf = false): Position {
  const { isMap, isPair, isScalar, isSeq } = yaml();
  const { doc, lineCounter } = parsed.positioned();
  let node: unknown = doc.contents;
  let best = position(lineCounter, node as Node) ?? { line: 1, column: 1 };
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      // A missing field is reported where its map is introduced (`network:`), not at a sibling.
      if (!pair) return best;
      const keyPos = position(lineCounter, pair.key as Node) ?? best;
      if (keyOf && i === path.length - 1) return keyPos;
      node = pair.value;
      best = i === path.length - 1 ? (position(lineCounter, node as Node) ?? keyPos) : keyPos;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      if (node === undefined) return best;
      best = position(lineCounter, node as Node) ?? best;
    } else {
      return best;
    }
  }
  return best;
}

/** The value at `path` in plain data, or undefined. */
export function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = data;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[key as string];
  }
  return cur;
}
