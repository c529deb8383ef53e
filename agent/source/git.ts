/**
 * source: bring the config repo's chosen revision into the state directory, refusing what must
 * not be applied. git is reached only through simple-git, and only from agent/source/.
 *
 * - A git URL (ssh, https, git://, file://) is cloned once into the state directory, then fetched.
 * - An absolute path to a directory is used as it is (local-path mode, for trying the agent out):
 *   its working tree is read directly, uncommitted edits included.
 */
import { access, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { workTreeRevision } from './revision.js';

export interface GitSourceOptions {
  url: string;
  branch: string;
  /** A tag or commit to apply instead of the branch head. */
  ref?: string;
  sshKeyFile?: string;
  knownHostsFile: string;
  allowHistoryRewrite: boolean;
  /** When set, only commits with an SSH signature by a key listed here are applied. */
  allowedSignersFile?: string;
  timeoutMs: number;
  /** Where the clone lives (inside the state directory). */
  workDir: string;
  /**
   * A private directory where ssh keeps one connection to the git host open between fetches
   * (ControlMaster). Without it, every fetch pays a new ssh handshake.
   */
  sshControlDir?: string;
}

/**
 * How long ssh keeps the shared connection after its last fetch. Longer than the default sync
 * schedule (every minute), so the scheduled fetches keep it warm and a push's fetch finds it
 * open: measured on the e2e host, a fetch took 300-360 ms with a new connection and 120-130 ms
 * over the shared one (the handshake alone was ~250 ms).
 */
const SSH_CONTROL_PERSIST_SECONDS = 120;

/**
 * The longest ControlPath that fits: a unix socket path has at most 107 bytes, and ssh adds a
 * 17-character suffix to the path while it sets the socket up. %C expands to 40 hex digits.
 */
const MAX_CONTROL_DIR_LENGTH = 107 - 17 - 41;

export type FetchResult =
  | { ok: true; dir: string; revision: string; commit?: string; localPath: boolean; /** ms of the checkout (and clean-up) alone. */ checkoutMs?: number }
  | { ok: false; kind: 'unreachable' | 'rejected' | 'unsigned'; message: string; commit?: string; applied?: string };

/** An absolute path that is not a URL: read the directory itself. */
export function isLocalPath(url: string): boolean {
  return path.isAbsolute(url) && !url.includes('://');
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export class GitSource {
  /**
   * Whether this instance has pointed the clone's origin at opts.url: once is enough (settings
   * with another URL make another instance), and every git child costs a fork of the daemon.
   */
  private originSet = false;

  constructor(private readonly opts: GitSourceOptions) {}

  /** opts.sshControlDir, when a socket path in it fits. */
  private get sshControlDir(): string | undefined {
    const dir = this.opts.sshControlDir;
    return dir && Buffer.byteLength(dir) <= MAX_CONTROL_DIR_LENGTH ? dir : undefined;
  }

  get localPath(): boolean {
    return isLocalPath(this.opts.url);
  }

  /** Where the config repo is checked out: the clone in the state directory, or the local path. */
  get checkoutDir(): string {
    return this.localPath ? this.opts.url : this.opts.workDir;
  }

  /**
   * The environment every git child gets, built from scratch rather than inherited (an inherited
   * EDITOR, PAGER or GIT_* could run programs): never prompt, strict host keys, bounded connects.
   */
  private env(): Record<string, string> {
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/nonexistent', LANG: 'C' };
    env.GIT_TERMINAL_PROMPT = '0';
    const ssh = [
      'ssh',
      '-o BatchMode=yes',
      '-o StrictHostKeyChecking=yes',
      `-o UserKnownHostsFile=${shellQuote(this.opts.knownHostsFile)}`,
      '-o ConnectTimeout=10',
      '-o ServerAliveInterval=15',
      '-o ServerAliveCountMax=2',
    ];
    if (this.opts.sshKeyFile) ssh.push(`-i ${shellQuote(this.opts.sshKeyFile)}`, '-o IdentitiesOnly=yes');
    const control = this.sshControlDir;
    if (control) {
      // The master detaches with its stdio on /dev/null, so git (and simple-git) do not wait for it.
      ssh.push('-o ControlMaster=auto', `-o ControlPath=${shellQuote(path.join(control, '%C'))}`, `-o ControlPersist=${SSH_CONTROL_PERSIST_SECONDS}`);
    }
    env.GIT_SSH_COMMAND = ssh.join(' ');
    return env;
  }

  private git(baseDir: string, signal?: AbortSignal): SimpleGit {
    const config = [
      // https: give up on a connection that stalls instead of hanging on it.
      'http.lowSpeedLimit=1000',
      'http.lowSpeedTime=30',
    ];
    if (this.opts.allowedSignersFile) config.push(`gpg.ssh.allowedSignersFile=${this.opts.allowedSignersFile}`);
    const git = simpleGit({
      baseDir,
      config,
      timeout: { block: this.opts.timeoutMs },
      ...(signal ? { abort: signal } : {}),
      allowEnvironment: ['GIT_SSH_COMMAND', 'GIT_TERMINAL_PROMPT'],
      unsafe: { allowUnsafeSshCommand: true } as never,
    });
    return git.env(this.env());
  }

  /**
   * Fetches and checks out the revision to apply. `applied` is the last applied commit: a target
   * that does not descend from it (a force-push rewrote history) is refused unless allowed.
   */
  async fetch(applied?: string, signal?: AbortSignal): Promise<FetchResult> {
    if (this.localPath) {
      try {
        await access(this.opts.url);
      } catch {
        return { ok: false, kind: 'unreachable', message: `config repo directory ${this.opts.url} does not exist` };
      }
      return { ok: true, dir: this.opts.url, revision: await workTreeRevision(this.opts.url), localPath: true };
    }

    const { workDir, branch, ref } = this.opts;
    if (this.sshControlDir) await mkdir(this.sshControlDir, { recursive: true, mode: 0o700 });
    let git: SimpleGit;
    try {
      await access(path.join(workDir, '.git'));
      git = this.git(workDir, signal);
    } catch {
      await rm(workDir, { recursive: true, force: true });
      await mkdir(path.dirname(workDir), { recursive: true, mode: 0o700 });
      try {
        await this.git(path.dirname(workDir), signal).clone(this.opts.url, workDir, ['--no-checkout', '--origin', 'origin']);
        this.originSet = true;
      } catch (e) {
        await rm(workDir, { recursive: true, force: true });
        return { ok: false, kind: 'unreachable', message: `cannot clone ${this.opts.url}: ${firstLine(e)}` };
      }
      git = this.git(workDir, signal);
    }

    const tracking = `refs/remotes/origin/${branch}`;
    // Where the branch was before this fetch: with the fetch's own report, it can spare the
    // merge-base child below (each git child is a fork of the daemon).
    const trackedBefore = ref ? undefined : await looseRef(workDir, tracking);
    // git prints its report of updated refs on stderr, which simple-git's fetch result leaves out.
    let fetchReport = '';
    git.outputHandler((_command, _stdout, stderr, args) => {
      if (args.includes('fetch')) stderr.on('data', (chunk: Buffer | string) => (fetchReport += String(chunk)));
    });
    // Anything in the clone that no commit holds (untracked or ignored files) is removed, so that
    // what is loaded is the commit and nothing else. A checkout makes no such file, so they are
    // looked for while the fetch runs: what is stray after the checkout was stray before it.
    // `--no-optional-locks`: the status takes no index lock the checkout would wait for, and it
    // always prints its branch lines (see --verbose below).
    const strays = git
      .raw(['--no-optional-locks', 'status', '--porcelain=v2', '--branch', '--untracked-files=all', '--ignored'])
      .then((status) => status.split('\n').some((line) => line.startsWith('? ') || line.startsWith('! ')))
      .catch(() => true);
    try {
      const unreachable = await this.fetchOrigin(git);
      if (unreachable !== undefined) return { ok: false, kind: 'unreachable', message: `cannot fetch ${this.opts.url}: ${unreachable}` };

      const wanted = ref ?? tracking;
      // `rev-parse --verify --quiet` fails with an exit code only, which simple-git does not turn
      // into an error: an empty answer means the ref does not exist.
      const commit =
        (ref ? undefined : await looseRef(workDir, wanted)) ??
        (await git
          .revparse(['--verify', '--quiet', `${wanted}^{commit}`])
          .then((out) => out.trim())
          .catch(() => ''));
      if (!/^[0-9a-f]{40,64}$/.test(commit)) {
        return {
          ok: false,
          kind: 'rejected',
          message: ref ? `ref ${ref} does not exist in ${this.opts.url}` : `branch ${branch} does not exist in ${this.opts.url}`,
        };
      }

      if (applied && applied !== commit && !ref && !this.opts.allowHistoryRewrite) {
        // `merge-base --is-ancestor` answers only with its exit code, which simple-git does not
        // report when git prints nothing; the merge base itself is unambiguous.
        const descends =
          (trackedBefore === applied && fastForwarded(fetchReport, branch, applied, commit)) ||
          (await git
            .raw(['merge-base', applied, commit])
            .then((out) => out.trim())
            .catch(() => '')) === applied;
        if (!descends) {
          return {
            ok: false,
            kind: 'rejected',
            commit,
            applied,
            message:
              `${branch} is at ${commit.slice(0, 12)}, which does not descend from the applied ${applied.slice(0, 12)}: ` +
              'the history was rewritten (force-push). Push a new commit on top of the applied one, or set source.allow_history_rewrite',
          };
        }
      }

      if (this.opts.allowedSignersFile) {
        // %G? is "G" only for a good signature by a key in gpg.ssh.allowedSignersFile.
        const signed = await git
          .raw(['log', '-1', '--format=%G?', commit])
          .then((out) => out.trim() === 'G')
          .catch(() => false);
        if (!signed) {
          return {
            ok: false,
            kind: 'unsigned',
            commit,
            message: `commit ${commit.slice(0, 12)} has no valid SSH signature by a key in ${this.opts.allowedSignersFile}`,
          };
        }
      }

      // The status is over before the checkout changes the files it reads.
      const anyStray = await strays;
      const checkoutStarted = performance.now();
      await git.raw(['checkout', '--force', '--detach', commit]);
      // The silent `clean` runs only when there is something to remove (see --verbose above).
      if (anyStray) await git.raw(['clean', '-ffdqx']);
      return { ok: true, dir: workDir, revision: commit.slice(0, 12), commit, localPath: false, checkoutMs: performance.now() - checkoutStarted };
    } finally {
      // Not left running when the fetch gives up early.
      await strays;
    }
  }

  /** Fetches every branch from the source URL (pointing origin at it first); git's reason when that fails. */
  private async fetchOrigin(git: SimpleGit): Promise<string | undefined> {
    try {
      if (!this.originSet) {
        await git.raw(['remote', 'set-url', 'origin', this.opts.url]);
        this.originSet = true;
      }
      // --verbose: git then always prints (an up-to-date ref too). simple-git waits an extra 50 ms
      // for a child that printed nothing before it reports it done (its completion plugin).
      await git.fetch(['--verbose', '--prune', '--tags', '--force', 'origin', `+refs/heads/*:refs/remotes/origin/*`]);
      return undefined;
    } catch (e) {
      return firstLine(e);
    }
  }
}

/**
 * Whether git's fetch report says it moved origin/<branch> from `from` to `to` as a fast-forward:
 * the line `   <from>..<to>  <branch> -> origin/<branch>`, with the flag ' ' (git-fetch(1),
 * OUTPUT: ' ' a fast-forward, '+' a forced update, shown as `<old>...<new>`). git decides that
 * `to` descends from `from` before it prints the flag. The ids are abbreviated, so each must
 * start the full one. Anything else (another output format, a forced update) answers false,
 * and the caller asks `git merge-base` instead.
 */
export function fastForwarded(report: string, branch: string, from: string, to: string): boolean {
  return report.split('\n').some((line) => {
    const m = /^ {3}([0-9a-f]{4,64})\.\.([0-9a-f]{4,64}) +(\S+) +-> (\S+)$/.exec(line.trimEnd());
    return m !== null && m[4] === `origin/${branch}` && m[3] === branch && from.startsWith(m[1]!) && to.startsWith(m[2]!);
  });
}

/**
 * The commit a branch ref points to, read from its loose ref file, or undefined when there is
 * none (packed by gc, or another ref storage): the caller then asks git. A fetch writes the refs it
 * updates as loose files, and a loose ref wins over a packed one (gitrepository-layout(5)), so
 * this is what `rev-parse` would answer, without a git child: each is a fork of the daemon.
 */
async function looseRef(workDir: string, name: string): Promise<string | undefined> {
  if (!/^refs\/remotes\/origin\/[A-Za-z0-9._/-]+$/.test(name) || name.includes('..')) return undefined;
  const text = await readFile(path.join(workDir, '.git', name), 'utf8').catch(() => '');
  const id = text.trim();
  return /^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(id) ? id : undefined;
}

/** git's own reason: the `fatal:` line if there is one, else the last line it printed. */
/**
 * git's reason, from its `fatal:` line on. git continues some messages on the next lines
 * ("fatal: unable to connect to 127.0.0.1:" / "127.0.0.1[0: 127.0.0.1]: errno=Connection
 * refused"), so those are kept, joined into one line.
 */
function firstLine(e: unknown): string {
  const lines = (e instanceof Error ? e.message : String(e)).split('\n').map((l) => l.trim()).filter(Boolean);
  const fatal = lines.findIndex((l) => l.startsWith('fatal:'));
  if (fatal < 0) return lines[lines.length - 1] ?? 'unknown error';
  return lines.slice(fatal, fatal + 3).join(' ');
}
