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
  /** What was found, already shortened and quoted; absent when nothing was there. */
  found?: string;
}

/** `extensions/sales.yaml:12:13: extensions[3].number: expected ..., found "10a1"` */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file;
  const field = issue.field ? ` ${issue.field}:` : '';
  const found = issue.found !== undefined ? `, found ${issue.found}` : '';
  const level = issue.severity === 'warning' ? ' warning:' : '';
  return `${where}:${level}${field} ${issue.message}${found}`;
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

/** A short, safe rendering of a found value: never more than 60 characters, control characters escaped. */
export function describeFound(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  if (typeof value === 'string') {
    const shown = JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
    return shown;
  }
  return String(value);
}

/** Issues sorted by file, line, column so output is stable and readable. */
export function sortIssues(issues: ConfigIssue[]): ConfigIssue[] {
  return [...issues].sort(
    (a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0) || a.line - b.line || a.column - b.column,
  );
}
