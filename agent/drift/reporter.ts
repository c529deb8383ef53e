/**
 * When to log a drift: when it appears or changes, then as a reminder every `reminderMs` while it
 * persists, and once when it goes away. Not on every check: a check every minute would otherwise
 * bury the journal in identical lines.
 */
export interface DriftDecision {
  log: 'new' | 'changed' | 'reminder' | 'resolved' | 'none';
}

export class DriftReporter {
  private readonly seen = new Map<string, { signature: string; since: number; lastLogged: number }>();

  constructor(private readonly reminderMs: number, private readonly now: () => number = Date.now) {}

  /** `signature` identifies the drift's content; undefined means there is no drift of this key. */
  observe(key: string, signature: string | undefined): DriftDecision {
    const prev = this.seen.get(key);
    const t = this.now();
    if (signature === undefined) {
      if (!prev) return { log: 'none' };
      this.seen.delete(key);
      return { log: 'resolved' };
    }
    if (!prev) {
      this.seen.set(key, { signature, since: t, lastLogged: t });
      return { log: 'new' };
    }
    if (prev.signature !== signature) {
      this.seen.set(key, { signature, since: prev.since, lastLogged: t });
      return { log: 'changed' };
    }
    if (t - prev.lastLogged >= this.reminderMs) {
      prev.lastLogged = t;
      return { log: 'reminder' };
    }
    return { log: 'none' };
  }

  since(key: string): number | undefined {
    return this.seen.get(key)?.since;
  }
}
