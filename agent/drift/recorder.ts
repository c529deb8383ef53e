/**
 * Every drift the daemon finds (managed files edited by hand, live Asterisk state, the cloud),
 * in one place: when to log it (when it appears or changes, then a reminder every
 * `drift.reminder_minutes`, and once when it goes away), and what is open right now, kept in
 * `drift.json` in the state directory for `pbx-agent status`. Its own file, so that the
 * reconcile's writes of state.json and the drift checks never overwrite each other's news.
 */
import { DirectoryFileStore } from '../apply/files.js';

export type DriftKind = 'file' | 'asterisk' | 'cloud';
export type DriftSeverity = 'error' | 'warning';

export interface DriftEntry {
  kind: DriftKind;
  severity: DriftSeverity;
  message: string;
  /** ISO time it was first seen. */
  since: string;
  /** ISO time it was last logged as a reminder; absent before the first reminder. */
  lastReminder?: string;
}

/** What to log about one observation. */
export type DriftLog = 'new' | 'changed' | 'reminder' | 'resolved' | 'none';

export interface DriftFinding {
  severity: DriftSeverity;
  message: string;
  /** What identifies this drift's content; a new signature is a change. Default: the message. */
  signature?: string;
}

export const DRIFT_FILE = 'drift.json';

export async function readDrifts(stateDir: string): Promise<Record<string, DriftEntry>> {
  const text = await new DirectoryFileStore(stateDir, { mode: 0o600, dirMode: 0o700 }).read(DRIFT_FILE).catch(() => undefined);
  if (text === undefined) return {};
  try {
    return JSON.parse(text) as Record<string, DriftEntry>;
  } catch {
    return {};
  }
}

export class DriftRecorder {
  private readonly store: DirectoryFileStore;
  private open = new Map<string, DriftEntry & { signature: string; lastLogged: number }>();
  /** Writes one after another, so that the file ends with the newest picture. */
  private writing: Promise<void> = Promise.resolve();

  constructor(
    stateDir: string,
    private readonly reminderMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.store = new DirectoryFileStore(stateDir, { mode: 0o600, dirMode: 0o700 });
  }

  /** Picks up what a previous daemon left open, so that a restart does not log them as new. */
  async load(): Promise<void> {
    const t = this.now();
    for (const [key, e] of Object.entries(await readDrifts(this.store.root))) {
      this.open.set(key, { ...e, signature: e.message, lastLogged: Date.parse(e.lastReminder ?? e.since) || t });
    }
  }

  /** One check's verdict on `key`: a finding, or undefined for "no drift here". */
  async observe(key: string, kind: DriftKind, finding: DriftFinding | undefined): Promise<DriftLog> {
    const prev = this.open.get(key);
    const t = this.now();
    let decision: DriftLog;
    if (finding === undefined) {
      if (!prev) return 'none';
      this.open.delete(key);
      decision = 'resolved';
    } else {
      const signature = finding.signature ?? finding.message;
      if (!prev) {
        this.open.set(key, { kind, severity: finding.severity, message: finding.message, since: new Date(t).toISOString(), signature, lastLogged: t });
        decision = 'new';
      } else if (prev.signature !== signature || prev.severity !== finding.severity) {
        this.open.set(key, { ...prev, severity: finding.severity, message: finding.message, signature, lastLogged: t });
        decision = 'changed';
      } else if (t - prev.lastLogged >= this.reminderMs) {
        prev.lastLogged = t;
        prev.lastReminder = new Date(t).toISOString();
        prev.message = finding.message;
        decision = 'reminder';
      } else {
        return 'none';
      }
    }
    await this.save();
    return decision;
  }

  /** Keys of one kind that are open (for checks that replace their whole set each run). */
  keys(kind: DriftKind): string[] {
    return [...this.open.entries()].filter(([, e]) => e.kind === kind).map(([k]) => k);
  }

  since(key: string): string | undefined {
    return this.open.get(key)?.since;
  }

  get entries(): Record<string, DriftEntry> {
    return Object.fromEntries([...this.open.entries()].map(([k, e]) => [k, entryOf(e)]));
  }

  private save(): Promise<void> {
    const text = JSON.stringify(this.entries, null, 2) + '\n';
    this.writing = this.writing.then(() => this.store.writeAtomic(DRIFT_FILE, text)).catch(() => undefined);
    return this.writing;
  }
}

function entryOf(e: DriftEntry): DriftEntry {
  return { kind: e.kind, severity: e.severity, message: e.message, since: e.since, ...(e.lastReminder ? { lastReminder: e.lastReminder } : {}) };
}
