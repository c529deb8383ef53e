/**
 * A real git remote for tests: a bare repository served by a real `git daemon` process on
 * 127.0.0.1 (git:// protocol), plus a working clone the test commits and pushes from.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './config-repo.js';
import { freePort } from './net.js';

const run = promisify(execFile);

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', ['-c', 'user.email=ops@example.com', '-c', 'user.name=Ops', ...args], { cwd });
  return stdout.trim();
}


export class GitRemote {
  private daemon: ChildProcess | undefined;
  port = 0;

  private constructor(readonly base: string, readonly bare: string, readonly work: string) {}

  static async create(): Promise<GitRemote> {
    const base = await tempDir('pbx-agent-git-');
    const bare = path.join(base, 'config.git');
    const work = path.join(base, 'work');
    await run('git', ['init', '-q', '--bare', '-b', 'main', bare]);
    await run('git', ['init', '-q', '-b', 'main', work]);
    await git(work, 'remote', 'add', 'origin', bare);
    return new GitRemote(base, bare, work);
  }

  /** The URL the agent fetches from. */
  get url(): string {
    return `git://127.0.0.1:${this.port}/config.git`;
  }

  /** Writes files (path → text, or null to delete) and commits them; returns the commit. */
  async commit(files: Record<string, string | null>, message = 'change'): Promise<string> {
    for (const [rel, text] of Object.entries(files)) {
      const file = path.join(this.work, rel);
      if (text === null) await rm(file, { force: true });
      else {
        await mkdir(path.dirname(file), { recursive: true });
        await writeFile(file, text);
      }
    }
    await git(this.work, 'add', '-A');
    await git(this.work, 'commit', '-q', '--allow-empty', '-m', message);
    return git(this.work, 'rev-parse', 'HEAD');
  }

  async push(force = false): Promise<void> {
    await git(this.work, 'push', '-q', ...(force ? ['--force'] : []), 'origin', 'HEAD:main');
  }

  /** Pushes one given commit of the local history to main. */
  async pushCommit(commit: string): Promise<void> {
    await git(this.work, 'push', '-q', 'origin', `${commit}:refs/heads/main`);
  }

  /** Rewrites history: drops the last commit locally (to be force-pushed). */
  async resetHard(ref: string): Promise<void> {
    await git(this.work, 'reset', '-q', '--hard', ref);
  }

  async head(): Promise<string> {
    return git(this.work, 'rev-parse', 'HEAD');
  }

  /** Starts (or restarts, on the same port) the git daemon serving the bare repo. */
  async serve(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    this.daemon = spawn(
      'git',
      ['daemon', '--reuseaddr', '--export-all', `--base-path=${this.base}`, '--listen=127.0.0.1', `--port=${this.port}`, '--informative-errors', this.base],
      { stdio: 'ignore' },
    );
    // Ready when it answers ls-remote.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await run('git', ['ls-remote', this.url], { timeout: 2000 });
        return;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async stopServing(): Promise<void> {
    const d = this.daemon;
    this.daemon = undefined;
    if (!d || d.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      d.once('exit', () => resolve());
      d.kill('SIGTERM');
    });
  }
}
