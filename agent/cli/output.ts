/** Small helpers shared by the CLI commands. */
import { formatIssue, type ConfigIssue } from '../load/issues.js';

export const EXIT = {
  ok: 0,
  /** The config repo (or a host secret) is invalid; nothing was applied. */
  invalidConfig: 1,
  /** Wrong command-line usage. */
  usage: 2,
  /** Something outside the config failed (I/O, Asterisk, ...). */
  failure: 3,
} as const;

export class UsageError extends Error {}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t.endsWith('\n') ? t : `${t}\n`),
  err: (t) => process.stderr.write(t.endsWith('\n') ? t : `${t}\n`),
};

export function printIssues(io: Io, issues: readonly ConfigIssue[]): void {
  for (const issue of issues) io.err(formatIssue(issue));
}

export function countLine(issues: readonly ConfigIssue[]): string {
  const errors = issues.filter((i) => i.severity === 'error').length;
  const warnings = issues.length - errors;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return `${plural(errors, 'error')}, ${plural(warnings, 'warning')}`;
}

export function issuesJson(issues: readonly ConfigIssue[]) {
  return {
    errors: issues.filter((i) => i.severity === 'error'),
    warnings: issues.filter((i) => i.severity === 'warning'),
  };
}
