/**
 * A problem found in the config repo, located for the operator: file, line, column, field.
 * Every stage before render reports problems this way, all of them in one run.
 */
export type Severity = 'error' | 'warning';

export interface ConfigIssue {
  severity: Severity;
  /** Path relative to the config repo root, with forward slashes. */
  file: string;
  /** 1-based; 0 when the problem is about the file as a whole. */
  line: number;
  column: number;
  /** The field, e.g. `extensions[3].number`; empty for the file as a whole. */
  field: string;
  /** What was expected (or what is wrong), in words an operator acts on. */
  message: string;
  /** What was found (text shortened to 60 characters); absent when nothing was there. */
  found?: Found;
}

/**
 * A found value as machines get it in JSON: the text itself (not quoted again), a number, true
 * or false, null for an empty value, or only the kind of a list or map.
 */
export type Found = string | number | boolean | null | { type: 'list' | 'map' };

/** `extensions/sales.yaml:12:13: extensions[3].number: expected ..., found "10a1"` */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  const field = issue.field ? ` ${issue.field}:` : '';
  const found = issue.found !== undefined ? `, found ${describeFound(issue.found)}` : '';
  const level = issue.severity === 'warning' ? ' warning:' : '';
  return printable(`${where}:${level}${field} ${issue.message}${found}`);
}

/**
 * Characters a terminal would act on rather than show, escaped as \uXXXX: control characters
 * (C0 and C1), the line and paragraph separators (JSON.stringify leaves U+2028/U+2029 raw, and
 * some terminals and log viewers break the line there), and the bidirectional overrides that make
 * text display in another order than it is read ("Trojan Source", CVE-2021-42574).
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** A line of text output that shows every character of YAML-supplied text instead of obeying it. */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A problem with a file as a whole (no line or field). */
export function fileIssue(file: string, message: string): ConfigIssue {
  return { severity: 'error', file, line: 0, column: 0, field: '', message };
}

export function hasErrors(issues: readonly ConfigIssue[]): boolean {
  return issues.some((i) => i.severity === 'error');
}

/** `['extensions', 3, 'number']` → `extensions[3].number` */
export function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    // Keys come from the YAML: anything unusual is quoted so it cannot break the message line.
    else if (!/^[A-Za-z0-9_-]+$/.test(String(key))) out += `[${JSON.stringify(String(key))}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** A found value for an issue: text longer than 60 characters is shortened. Undefined: nothing was there. */
export function foundValue(value: unknown): Found | undefined {
  if (value === undefined) return undefined;
  if (value === null) return null;
  if (Array.isArray(value)) return { type: 'list' };
  if (typeof value === 'object') return { type: 'map' };
  if (typeof value === 'string') return value.length > 60 ? `${value.slice(0, 57)}...` : value;
  if (typeof value === 'number' || typeof value === 'boolean') return value;
  return String(value);
}

/** A found value in words: text quoted with its escapes, numbers as they are, "a list", "a map". */
export function describeFound(found: Found): string {
  if (found === null) return 'an empty value';
  if (typeof found === 'object') return found.type === 'list' ? 'a list' : 'a map';
  if (typeof found === 'string') return JSON.stringify(found);
  return String(found);
}

/** Issues sorted by file, line, column so output is stable and readable. */
export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort(
    (a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.column - b.column,
  );
}
