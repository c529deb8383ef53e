/**
 * The pure front half of the reconcile pipeline, shared by `pbx-agent render`, `validate` and
 * the daemon: config repo on disk → load → resolve → render. Stops at the first stage that
 * reports errors; nothing after it runs.
 */
import { hasErrors, loadDesiredState, readConfigRepo, type ConfigIssue, type LoadResult } from './load/index.js';
import type { ResolvedState } from './model.js';
import { renderAsteriskFiles, type RenderedFile } from './render/index.js';
import { resolveDesiredState, type HostFacts } from './resolve/index.js';

export interface RenderOutcome {
  issues: ConfigIssue[];
  summary: LoadResult['summary'];
  /** Line and column of a SourceRef, for messages of later stages. */
  locate: LoadResult['locate'];
  /** Present only when every stage succeeded. */
  state?: ResolvedState;
  files?: RenderedFile[];
  /** Milliseconds per stage, for the log line and the benchmark. */
  timings: { read: number; load: number; resolve: number; render: number };
}

export async function renderConfigRepo(repoDir: string, host: HostFacts, revision: string): Promise<RenderOutcome> {
  const t0 = performance.now();
  const snapshot = await readConfigRepo(repoDir);
  const t1 = performance.now();
  const loaded = loadDesiredState(snapshot);
  const t2 = performance.now();
  const timings = { read: t1 - t0, load: t2 - t1, resolve: 0, render: 0 };
  if (!loaded.state) return { issues: loaded.issues, summary: loaded.summary, locate: loaded.locate, timings };

  const { resolved, issues: resolveIssues } = await resolveDesiredState(loaded.state, host, loaded.locate);
  const t3 = performance.now();
  timings.resolve = t3 - t2;
  const issues = [...loaded.issues, ...resolveIssues];
  if (!resolved || hasErrors(issues)) return { issues, summary: loaded.summary, locate: loaded.locate, timings };

  const files = renderAsteriskFiles(resolved, revision);
  timings.render = performance.now() - t3;
  return { issues, summary: loaded.summary, locate: loaded.locate, state: resolved, files, timings };
}
