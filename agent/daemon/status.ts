/**
 * `pbx-agent status`: what is applied, since when, and whether the agent is healthy, said plainly.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { DriftEntry } from '../drift/recorder.js';
import type { AgentState } from '../record/state.js';

export interface Health {
  healthy: boolean;
  /** Why it is unhealthy: each needs an operator. */
  problems: string[];
  /** Worth knowing, not (yet) unhealthy. */
  notes: string[];
}

/** The daemon's pid file in the state directory. */
export const PID_FILE = 'daemon.pid';

const STALE_PENDING_MS = 15 * 60_000;

export function assessHealth(
  state: AgentState,
  opts: { unhealthyAfterFailures: number; now: Date; daemonPid?: number | undefined; drifts?: Record<string, DriftEntry> },
): Health {
  const problems: string[] = [];
  const notes: string[] = [];
  if (opts.daemonPid === undefined) notes.push('the daemon is not running (no live pid in the state directory)');
  if (!state.applied) problems.push('nothing has been applied yet');
  if (state.consecutiveFailures >= opts.unhealthyAfterFailures) {
    problems.push(`the last ${state.consecutiveFailures} runs failed; last error: ${state.lastRun?.error ?? 'unknown'}`);
  }
  if (state.failed) {
    const stuck = state.lastRun?.status === 'skipped' || state.lastRun?.revision === state.failed.revision;
    (stuck ? problems : notes).push(
      `revision ${state.failed.revision} was rolled back (${state.failed.reason})${stuck ? '; waiting for a new commit' : ''}`,
    );
  }
  if (state.sourceRejected) problems.push(`the source refused the newest commit: ${state.sourceRejected.reason}`);
  if (state.refused) problems.push(`revision ${state.refused.revision} was refused and nothing was applied: ${state.refused.reason}; ${state.refused.fix}`);
  if (state.pending && opts.now.getTime() - Date.parse(state.pending.at) > STALE_PENDING_MS) {
    problems.push(`a change (revision ${state.pending.revision}) has been waiting for verification since ${state.pending.at}`);
  }
  if (state.live) {
    const { added, changed, removed } = state.live;
    const what = [added.length && `${added.length} added`, changed.length && `${changed.length} changed`, removed?.length && `${removed.length} removed (locked out, still listed)`].filter(Boolean).join(', ');
    notes.push(`live objects since ${state.live.since}: ${what}; folded into pjsip.conf once no change has come for a while`);
  }
  if (state.restartPending) notes.push(`waiting for an Asterisk restart since ${state.restartPending.since}: ${state.restartPending.reasons.join('; ')}`);
  // An error-level drift means Asterisk or the instance is not what `applied` says.
  for (const [key, d] of Object.entries(opts.drifts ?? {})) {
    (d.severity === 'error' ? problems : notes).push(`drift (${key}) since ${d.since}: ${d.message}`);
  }
  return { healthy: problems.length === 0, problems, notes };
}

/** The daemon's pid if its pid file names a live process. */
export async function runningDaemonPid(stateDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(path.join(stateDir, PID_FILE), 'utf8').catch(() => '')).trim());
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

export function formatStatus(state: AgentState, health: Health, daemonPid: number | undefined): string {
  const lines = [
    `pbx-agent: ${health.healthy ? 'healthy' : 'UNHEALTHY'}`,
    `  daemon:    ${daemonPid ? `running (pid ${daemonPid})` : 'not running'}`,
    `  applied:   ${state.applied ? `revision ${state.applied.revision} at ${state.applied.at}` : 'nothing yet'}`,
    `  last run:  ${state.lastRun ? `${state.lastRun.status} (revision ${state.lastRun.revision}) at ${state.lastRun.at}, ${state.lastRun.durationMs} ms` : 'never'}`,
  ];
  if (state.lastRun?.error) lines.push(`  last error: ${state.lastRun.code ? `[${state.lastRun.code}] ` : ''}${state.lastRun.error}`);
  for (const p of health.problems) lines.push(`  problem:   ${p}`);
  for (const n of health.notes) lines.push(`  note:      ${n}`);
  return lines.join('\n');
}
