/**
 * Managed files edited by hand: chokidar watches /etc/asterisk/pbx-agent/; a file whose text is
 * not what the agent last applied is drift (a warning: Asterisk still runs what it loaded). Under
 * drift.file_policy restore, a reconcile puts the managed version back.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import { compareManagedFile, watchManagedFiles } from '../../drift/files.js';
import { logEvent } from '../../log.js';
import { MANAGED_DIR, MANAGED_FILES } from '../../managed-files.js';
import { mkdir } from 'node:fs/promises';
import type { DaemonContext, DaemonPlugin } from './plugin.js';

export class FileDriftPlugin implements DaemonPlugin {
  readonly name = 'file drift';
  private watcher: FSWatcher | undefined;

  constructor(private readonly ctx: DaemonContext) {}

  async start(): Promise<void> {
    const configDir = this.ctx.settings.asterisk.config_dir;
    // Watch the managed directory even before the first write creates it.
    await mkdir(path.join(configDir, MANAGED_DIR), { recursive: true, mode: 0o750 });
    this.watcher = await watchManagedFiles(configDir, MANAGED_FILES.map((f) => f.path), (rel) => void this.check(rel));
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
  }

  /** One managed file against what was applied. Exposed for the daemon's start-up pass. */
  async check(rel: string): Promise<void> {
    const { ctx } = this;
    if (ctx.reconcileBusy()) return; // the agent's own writes; the expected texts follow the run
    const actual = await readFile(path.join(ctx.settings.asterisk.config_dir, rel), 'utf8').catch(() => undefined);
    const drift = compareManagedFile(rel, await ctx.expected().get(rel), actual);
    const decision = await ctx.drift.observe(`file:${rel}`, 'file', drift ? { severity: 'warning', message: `${rel} ${drift.kind} by hand`, signature: drift.diff } : undefined);
    if (decision === 'resolved') {
      logEvent(ctx.log, 'info', 'drift.resolved', { drift: 'drift.file', file: rel }, `${rel} is as applied again`);
      return;
    }
    if (!drift) return;
    const restore = ctx.settings.drift.file_policy === 'restore';
    if (decision !== 'none') {
      logEvent(ctx.log, 'warn', 'drift.file', { file: rel, kind: drift.kind, diff: drift.diff, action: restore ? 'restore' : 'alert', reason: decision },
        restore ? `${rel} was changed by hand; putting the managed version back` : `${rel} was changed by hand; it will be overwritten by the next change from git`);
    }
    if (restore) ctx.requestRun('drift');
  }
}
