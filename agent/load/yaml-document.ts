/**
 * YAML parsing that keeps positions, so that any field path can be mapped back to file:line:col.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document, type Node } from 'yaml';
import type { ConfigIssue } from './issues.js';
import type { RepoFile } from './read-repo.js';

/**
 * Alias expansion budget handed to `yaml`: a "billion laughs" document is refused instead of
 * expanding into gigabytes. Real config repos use a handful of anchors at most.
 */
const MAX_ALIAS_COUNT = 100;

export interface ParsedYaml {
  file: string;
  doc: Document;
  lineCounter: LineCounter;
  /** The plain data, or undefined if the document could not be parsed. */
  data: unknown;
}

export interface Position {
  line: number;
  column: number;
}

/** Keys whose scalar values must stay text even when YAML would read them as numbers (`0100`). */
const TEXT_KEYS = new Set(['number']);
/** Every value in these maps is text too (feature codes such as `0700`). */
const TEXT_MAPS = new Set(['feature_codes']);

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
}

export function parseYaml(file: RepoFile): { parsed?: ParsedYaml; issues: ConfigIssue[] } {
  const lineCounter = new LineCounter();
  const doc = parseDocument(file.text, { lineCounter, prettyErrors: true, uniqueKeys: true, version: '1.2' });
  const issues: ConfigIssue[] = [];
  for (const err of doc.errors) {
    const pos = err.linePos?.[0];
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

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    if (/excessive alias count/i.test(msg)) {
      issues.push({
        severity: 'error',
        file: file.path,
        line: 0,
        column: 0,
        field: '',
        message: `YAML aliases expand too far (more than ${MAX_ALIAS_COUNT} alias uses); write the values out instead`,
      });
      return { issues };
    }
    // An unresolved alias is nearly always an unquoted feature code such as *97.
    let where: Position = { line: 0, column: 0 };
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
  return { parsed: { file: file.path, doc, lineCounter, data }, issues };
}

function position(parsed: ParsedYaml, node: Node | null | undefined): Position | undefined {
  const offset = node?.range?.[0];
  if (offset === undefined) return undefined;
  const p = parsed.lineCounter.linePos(offset);
  return { line: p.line, column: p.col };
}

/**
 * The position of the value at `path`, or of the deepest node that exists along it (for a
 * missing field: the map that should have held it). `keyOf` asks for the key's own position.
 */
export function locate(parsed: ParsedYaml, path: readonly PropertyKey[], keyOf = false): Position {
  let node: unknown = parsed.doc.contents;
  let best = position(parsed, node as Node) ?? { line: 1, column: 1 };
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(key));
      // A missing field is reported where its map is introduced (`network:`), not at a sibling.
      if (!pair) return best;
      const keyPos = position(parsed, pair.key as Node) ?? best;
      if (keyOf && i === path.length - 1) return keyPos;
      node = pair.value;
      best = i === path.length - 1 ? (position(parsed, node as Node) ?? keyPos) : keyPos;
    } else if (isSeq(node) && typeof key === 'number') {
      node = node.items[key];
      if (node === undefined) return best;
      best = position(parsed, node as Node) ?? best;
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
