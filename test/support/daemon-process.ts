/**
 * `pbx-agent run` as a real child process for tests, with its JSON log lines collected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PbxHost } from './pbx-host.js';
export { freePort } from './net.js';

export type LogLine = Record<string, unknown> & { event?: string; level?: string; msg?: string };


export const WEBHOOK_SECRET = 'whsec-Test-9f8e7d6c5b4a';

/** Writes a settings file for the daemon: the host's settings plus source, schedule, webhook. */
export async function daemonSettings(
  host: PbxHost,
  extra: {
    url: string;
    sync?: string;
    drift?: string;
    cloudSchedule?: string;
    filePolicy?: 'alert' | 'restore';
    webhookPort?: number;
    branch?: string;
    /** Loopback IMDS and EC2 endpoints; without them the cloud checks are off (no 169.254.169.254). */
    cloud?: { imds: string; ec2: string; eipPolicy?: 'alert' | 'adopt' };
  },
): Promise<string> {
  const base = await readFile(host.settingsFile, 'utf8');
  const secretFile = path.join(path.dirname(host.settingsFile), 'webhook.secret');
  await writeFile(secretFile, `${WEBHOOK_SECRET}\n`);
  await chmod(secretFile, 0o600);
  const lines = [
    base.trimEnd(),
    'log_level: debug',
    'source:',
    `  url: ${extra.url}`,
    `  branch: ${extra.branch ?? 'main'}`,
    '  timeout_seconds: 5',
    'schedule:',
    `  sync: "${extra.sync ?? '0 0 1 1 *'}"`,
    `  drift: "${extra.drift ?? '0 0 1 1 *'}"`,
    '  backoff_base_seconds: 0.5',
    '  backoff_max_seconds: 2',
    `  cloud: "${extra.cloudSchedule ?? '0 0 1 1 *'}"`,
    'drift:',
    `  file_policy: ${extra.filePolicy ?? 'alert'}`,
    'cloud:',
    ...(extra.cloud
      ? ['  enabled: true', `  imds_endpoint: ${extra.cloud.imds}`, `  ec2_endpoint: ${extra.cloud.ec2}`, `  eip_policy: ${extra.cloud.eipPolicy ?? 'alert'}`]
      : ['  enabled: false']),
  ];
  if (extra.webhookPort) lines.push('webhook:', `  listen: 127.0.0.1:${extra.webhookPort}`, `  secret_file: ${secretFile}`, '  max_body_bytes: 65536');
  const file = path.join(path.dirname(host.settingsFile), 'daemon.yaml');
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

export class DaemonProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  private readonly exited: Promise<number | null>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly child: ChildProcess) {
    let buffer = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffer += d.toString('utf8');
      let nl;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.startsWith('{')) this.lines.push(JSON.parse(line) as LogLine);
        for (const w of this.waiters) w();
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  /**
   * `compiled`: run dist/ as installed hosts do (measurements), instead of the sources under tsx
   * (tests, which must not depend on a build). `node`: another Node.js binary than this one's.
   */
  static start(
    settingsFile: string,
    options: { compiled?: boolean; env?: NodeJS.ProcessEnv; nodeFlags?: string[]; node?: string } = {},
  ): DaemonProcess {
    const entry = options.compiled ? ['dist/agent/cli/main.js'] : ['--import', 'tsx', 'agent/cli/main.ts'];
    const child = spawn(options.node ?? process.execPath, [...(options.nodeFlags ?? []), ...entry, 'run', '--settings', settingsFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: options.env ?? process.env,
    });
    return new DaemonProcess(child);
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** Waits until `pred` holds over the log lines so far (re-checked on every new line). */
  async waitFor(pred: (lines: LogLine[]) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    if (pred(this.lines)) return;
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pred(this.lines)) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for ${what}; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}\nstderr: ${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      void this.exited.then(() => {
        if (!pred(this.lines)) {
          cleanup();
          reject(new Error(`daemon exited while waiting for ${what}; stderr: ${this.stderr.slice(-2000)}`));
        }
      });
    });
  }

  /** Waits for the n-th `reconcile.finished` line and returns it. */
  async finished(n: number, what = `reconcile #${n}`): Promise<LogLine> {
    await this.waitFor((l) => l.filter((x) => x.event === 'reconcile.finished').length >= n, what);
    return this.events('reconcile.finished')[n - 1]!;
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  async exit(): Promise<number | null> {
    return this.exited;
  }

  async stop(): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    return this.exited;
  }
}
