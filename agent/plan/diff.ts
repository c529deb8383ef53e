/**
 * Unified diffs for people and logs, shortened to a number of lines.
 *
 * `diff` is loaded when a diff is first shown: most runs never show one, and not loading it keeps
 * about 4 MB out of the daemon's resident memory.
 */
import { createRequire } from 'node:module';

let diffLib: typeof import('diff') | undefined;

export interface DiffOptions {
  context: number;
  maxLines: number;
  /**
   * Lines of each file that precede the compared text (a managed file's header is left out of
   * the comparison): added to the hunk line numbers so that they are the file's own.
   */
  fromLineOffset?: number;
  toLineOffset?: number;
}

export function unifiedDiff(fromName: string, toName: string, before: string, after: string, options: DiffOptions): string {
  diffLib ??= createRequire(import.meta.url)('diff') as typeof import('diff');
  // No file headers: jsdiff would end the ---/+++ lines with a tab followed by an empty header.
  const patch = diffLib.createTwoFilesPatch(fromName, toName, before, after, undefined, undefined, { context: options.context });
  const from = options.fromLineOffset ?? 0;
  const to = options.toLineOffset ?? 0;
  const lines = patch
    .split('\n')
    .filter((l) => !l.startsWith('====='))
    .map((l) => (l.startsWith('@@ ') && (from !== 0 || to !== 0) ? shiftHunk(l, from, to) : l));
  if (lines.length <= options.maxLines) return lines.join('\n');
  return [...lines.slice(0, options.maxLines), `... ${lines.length - options.maxLines} more lines`].join('\n');
}

/** `@@ -12,7 +12,8 @@` with each start moved down by the lines in front of the compared text. */
function shiftHunk(line: string, from: number, to: number): string {
  return line.replace(/^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@/, (_m, a: string, b = '', c: string, d = '') => `@@ -${Number(a) + from}${b} +${Number(c) + to}${d} @@`);
}
