/** Small helpers shared by the CLI commands. */
import { formatIssue, type ConfigIssue } from '../load/issues.js';
import { fileDiff, type PlanWarning, type ReloadPlan, type RemovalRefusal } from '../plan/index.js';
import { listNumbers } from '../plan/hazards.js';
import { DEFAULT_SETTINGS_FILE, loadSettings } from '../settings.js';

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

/** Streams whose reader went away; what is written to them later is dropped. */
const closedOutputs = new Set<NodeJS.WritableStream>();
const onClosedOutput: Array<() => void> = [];

function write(stream: NodeJS.WritableStream, text: string): void {
  if (closedOutputs.has(stream)) return;
  stream.write(text.endsWith('\n') ? text : `${text}\n`);
}

export const processIo: Io = {
  out: (t) => write(process.stdout, t),
  err: (t) => write(process.stderr, t),
};

/**
 * A stream whose reader closed the pipe (EPIPE: `pbx-agent render ... | head`) is dropped
 * quietly instead of ending the process with an unhandled 'error' and a stack trace; the
 * command still ends with its own exit code.
 */
export function quietOnClosedOutput(stream: NodeJS.WritableStream): void {
  // Any other write error (EIO on a vanished terminal) leaves nowhere to report it either.
  stream.on('error', () => {
    if (closedOutputs.has(stream)) return;
    closedOutputs.add(stream);
    if (stream === process.stdout) for (const fn of onClosedOutput.splice(0)) fn();
  });
}

/** Calls `fn` once when nobody reads the standard output any more (commands that run until stopped). */
export function whenOutputCloses(fn: () => void): void {
  onClosedOutput.push(fn);
}

const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTDIR: 'a part of the path is a file, not a directory',
  EISDIR: 'is a directory, not a file',
  ENOSPC: 'no space left on the device',
  EROFS: 'the file system is read-only',
  EEXIST: 'already exists',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'the name is too long',
};

/** An error in words for the operator: the file and what is wrong with it, never a stack trace. */
export function describeError(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && ERRNO_WORDS[err.code] !== undefined) {
    const where = err.path ? `${err.syscall ? `cannot ${err.syscall} ` : ''}${err.path}: ` : '';
    return `${where}${ERRNO_WORDS[err.code]} (${err.code})`;
  }
  return err instanceof Error ? err.message : String(e);
}

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

/** A mass removal the guard refused, and who acknowledged it if anyone did. */
export interface GuardOutcome {
  refusal: RemovalRefusal;
  acknowledged?: string;
}

/** The plan's warnings, each on one line that starts with WARNING: what the change would do to the phones. */
export function printPlanWarnings(io: Io, warnings: readonly PlanWarning[]): void {
  for (const w of warnings) io.out(`WARNING: ${w.message}`);
}

/** The guard's verdict, as the last word of a plan. */
function printGuard(io: Io, guard: GuardOutcome): void {
  if (guard.acknowledged) {
    io.out(`Mass removal acknowledged by ${guard.acknowledged}: ${guard.refusal.reason}`);
    return;
  }
  io.out(`REFUSED: apply would refuse this change: ${guard.refusal.reason}.`);
  io.out(`Nothing would be written or reloaded; ${guard.refusal.fix}.`);
}

/**
 * Per file create/update/unchanged, optional diffs, extension changes, warnings, restart needs,
 * reloads; and last, when the guard refused the change, that and what to do.
 */
export function printPlan(
  io: Io,
  plan: ReloadPlan,
  onDisk: ReadonlyMap<string, string | undefined>,
  opts: { diff: boolean; verb: string; guard?: GuardOutcome },
): void {
  const width = Math.max(...plan.files.map((f) => f.path.length));
  for (const f of plan.files) io.out(`  ${f.action.padEnd(9)} ${f.path.padEnd(width)}  ${f.module}`);
  if (opts.diff) {
    for (const f of plan.files) {
      const diff = fileDiff(f, onDisk.get(f.path));
      if (diff) io.out(diff);
    }
  }
  const { added, changed, removed } = plan.extensions;
  if (added.length + changed.length + removed.length > 0) {
    const list = (xs: string[]) => listNumbers(xs) || '-';
    io.out(`Extensions: added ${list(added)}; changed ${list(changed)}; removed ${list(removed)}`);
  }
  const rooms = plan.conferences;
  if (rooms.added.length + rooms.changed.length + rooms.removed.length > 0) {
    const list = (xs: string[]) => xs.join(' ') || '-';
    io.out(`Conference rooms: added ${list(rooms.added)}; changed ${list(rooms.changed)}; removed ${list(rooms.removed)}`);
  }
  printPlanWarnings(io, plan.warnings);
  for (const reason of plan.restartReasons) io.out(`May need an Asterisk restart (apply checks the live transports after the reload): ${reason}`);
  const refused = opts.guard !== undefined && opts.guard.acknowledged === undefined;
  if (!refused) io.out(plan.changed ? `Asterisk ${opts.verb} reload: ${plan.reloads.join(', ')}` : 'Nothing changed: no file written, nothing to reload.');
  if (opts.guard) printGuard(io, opts.guard);
}

/**
 * The agent's settings (default /etc/pbx-agent/agent.yaml), or undefined after printing why they
 * are invalid. `mustExist`: a missing file is an error rather than "use the defaults".
 */
export async function settingsOrReport(file: string | undefined, io: Io, mustExist: boolean) {
  const { settings, issues } = await loadSettings(file ?? DEFAULT_SETTINGS_FILE, { mustExist });
  if (!settings) {
    printIssues(io, issues);
    io.err(`settings: invalid: ${countLine(issues)}`);
  }
  return settings;
}
