/**
 * Unified diffs for people and logs, shortened to a number of lines.
 *
 * `diff` is loaded when a diff is first shown: most runs never show one, and not loading it keeps
 * about 4 MB out of the daemon's resident memory.
 */
import { createRequire } from 'node:module';

let diffLib: typeof import('diff') | undefined;

export function unifiedDiff(fromName: string, toName: string, before: string, after: string, options: { context: number; maxLines: number }): string {
  diffLib ??= createRequire(import.meta.url)('diff') as typeof import('diff');
  const patch = diffLib.createTwoFilesPatch(fromName, toName, before, after, '', '', { context: options.context });
  const lines = patch.split('\n').filter((l) => !l.startsWith('====='));
  if (lines.length <= options.maxLines) return lines.join('\n');
  return [...lines.slice(0, options.maxLines), `... ${lines.length - options.maxLines} more lines`].join('\n');
}
