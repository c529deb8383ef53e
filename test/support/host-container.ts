/**
 * A PBX host for end-to-end tests: Debian unstable booted under its own systemd in a container
 * (debootstrap + systemd-nspawn), with only a loopback network, where the real `asterisk` package
 * (22.x, the Debian packaging Ubuntu 24.04's 20.x is rebuilt from) is installed by the bootstrap
 * with `apt-get install`, as on Ubuntu.
 *
 * The container has no network to the outside: everything apt will need is downloaded while the
 * root filesystem is prepared, into a local repository (/srv/e2e-apt) that its apt sources name.
 * The prepared root filesystem is cached as a zstd tarball under PBX_AGENT_TEST_CACHE, so only
 * the first run on a machine pays for debootstrap and the downloads.
 *
 * Facts this depends on (checked on this kind of machine):
 * - The host may run cgroup v1 with PID 1 not systemd: systemd-nspawn must mount cgroup2 inside
 *   (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1) for sid's systemd to boot; resource controllers
 *   (MemoryMax=, TasksMax=) then do not apply inside.
 * - There is no system bus on the host: --register=no --keep-unit, and commands enter the
 *   container with nsenter on its init's namespaces (no machinectl).
 * - The mirror's sid Release file can be past Valid-Until: apt inside is told not to check it.
 * - debootstrap copies the host's /etc/hostname: the container gets its own.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { TEST_CACHE } from './node-lines.js';

const run = promisify(execFile);

/** Packages installed in the image before it boots: the test's own tools (not the bootstrap's). */
const TEST_TOOLS = ['sip-tester', 'openssh-server', 'apt-utils'];
/** What the bootstrap will apt-get install (with --node-dist): downloaded into the local repository. */
const BOOTSTRAP_PACKAGES = ['asterisk', 'git', 'openssh-client', 'ca-certificates', 'curl', 'gnupg'];
/** Bump when the recipe below changes in a way the cache key does not show. */
const RECIPE_VERSION = 1;
/** A cached image older than this is rebuilt: sid moves on. */
const CACHE_MAX_AGE_MS = 7 * 24 * 3600_000;

/**
 * Containers, transcripts and the release under test. PBX_AGENT_E2E_WORK gives a run a folder of
 * its own, so that two checkouts on one machine can run the end-to-end test at the same time.
 */
export const WORK_ROOT = process.env.PBX_AGENT_E2E_WORK ?? '/var/tmp/pbx-agent-e2e';

export interface Exec {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A PATH as systemd and cloud-init give it: no /usr/local/lib, nothing of this machine's. */
export const PLAIN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** Runs a host command, failing with its output's tail. */
async function host(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; log?: string } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 600_000, maxBuffer: 64 << 20 });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    const tail = `${err.stdout ?? ''}${err.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    if (opts.log) await writeFile(opts.log, `${err.stdout ?? ''}\n${err.stderr ?? ''}`).catch(() => undefined);
    throw new Error(`${cmd} ${args.join(' ').slice(0, 300)} failed: ${err.message.split('\n')[0]}\n${tail}`);
  }
}

/**
 * The Debian mirror this machine's apt already uses (deb822 .sources files or sources.list),
 * so that the image comes from the same place without naming a mirror in the repository.
 */
export async function debianMirror(): Promise<string> {
  const candidates: string[] = [];
  const dir = '/etc/apt/sources.list.d';
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.sources')).map((f) => path.join(dir, f));
  for (const f of files) {
    for (const stanza of (await readFile(f, 'utf8')).split(/\n\s*\n/)) {
      if (/^Enabled:\s*no/im.test(stanza)) continue;
      const uris = /^URIs:\s*(.+)$/im.exec(stanza)?.[1];
      if (uris) candidates.push(...uris.trim().split(/\s+/));
    }
  }
  for (const line of (await readFile('/etc/apt/sources.list', 'utf8').catch(() => '')).split('\n')) {
    const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line);
    if (m) candidates.push(m[1]!);
  }
  const debian = candidates.find((u) => /^https?:\/\/.*\/debian\/?$/.test(u));
  if (!debian) throw new Error(`no Debian archive mirror (a URI ending in /debian) in apt's sources: ${candidates.join(', ') || 'none'}`);
  return debian.replace(/\/$/, '');
}

/** nspawn on a directory that is not booted: a command with the host's network (for apt). */
function nspawnPipe(root: string, script: string): Promise<string> {
  return host('systemd-nspawn', ['-q', '--register=no', '--keep-unit', '-D', root, '--pipe', '/bin/sh', '-ec', script], {
    env: { PATH: PLAIN_PATH, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1', LANG: 'C' },
    timeoutMs: 900_000,
  });
}

/**
 * The prepared root filesystem as a tarball: built once (debootstrap, test tools, the bootstrap's
 * packages in a local repository), then taken from the cache.
 */
export async function preparedRootfs(log: (m: string) => void = () => undefined): Promise<string> {
  const mirror = await debianMirror();
  const key = createHash('sha256')
    .update(JSON.stringify({ RECIPE_VERSION, mirror, TEST_TOOLS, BOOTSTRAP_PACKAGES }))
    .digest('hex')
    .slice(0, 16);
  const tarball = path.join(TEST_CACHE, `rootfs-sid-${key}.tar.zst`);
  const st = await stat(tarball).catch(() => undefined);
  if (st && Date.now() - st.mtimeMs < CACHE_MAX_AGE_MS) return tarball;

  await mkdir(TEST_CACHE, { recursive: true });
  await mkdir(WORK_ROOT, { recursive: true });
  const build = await mkdtemp(path.join(WORK_ROOT, 'build-'));
  const root = path.join(build, 'root');
  try {
    log(`debootstrap sid from ${mirror} (first run on this machine; cached afterwards)`);
    await host('debootstrap', ['--variant=minbase', '--include=systemd-sysv,dbus,iproute2,procps', 'sid', root, mirror], {
      env: { PATH: PLAIN_PATH, LANG: 'C' },
      timeoutMs: 1_200_000,
      log: path.join(build, 'debootstrap.log'),
    });
    await writeFile(path.join(root, 'etc/hostname'), 'pbx-e2e\n');
    await writeFile(path.join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\tpbx-e2e\n::1\tlocalhost ip6-localhost ip6-loopback\n');
    await writeFile(path.join(root, 'etc/apt/apt.conf.d/99pbx-agent-e2e'), 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n');
    log(`apt: ${TEST_TOOLS.join(' ')}; download ${BOOTSTRAP_PACKAGES.join(' ')} into a local repository`);
    await nspawnPipe(
      root,
      [
        'export DEBIAN_FRONTEND=noninteractive',
        'apt-get update -q',
        `apt-get install -y -q ${TEST_TOOLS.join(' ')}`,
        'apt-get clean',
        `apt-get install -y -q --download-only ${BOOTSTRAP_PACKAGES.join(' ')}`,
        'mkdir -p /srv/e2e-apt',
        'mv /var/cache/apt/archives/*.deb /srv/e2e-apt/',
        'cd /srv/e2e-apt && apt-ftparchive packages . > Packages',
        // From now on apt knows only the local repository, like a host with a reachable mirror.
        'rm -f /etc/apt/sources.list.d/* && echo "deb [trusted=yes] file:/srv/e2e-apt ./" > /etc/apt/sources.list',
        'rm -rf /var/lib/apt/lists/* && apt-get update -q',
        // The git host: a git user whose login shell runs git-upload-pack for the agent.
        'useradd --create-home --shell /bin/sh git',
        'mkdir -p /srv/git && chown git:git /srv/git',
        'printf "ListenAddress 127.0.0.1\\nPasswordAuthentication no\\nKbdInteractiveAuthentication no\\n" > /etc/ssh/sshd_config.d/pbx-agent-e2e.conf',
      ].join('\n'),
    );
    log('pack the prepared image');
    const tmp = `${tarball}.${process.pid}.tmp`;
    await host('tar', ['--zstd', '-cpf', tmp, '-C', root, '.'], { timeoutMs: 600_000 });
    await rename(tmp, tarball);
    return tarball;
  } finally {
    await rm(build, { recursive: true, force: true });
  }
}

export interface BootOptions {
  /** Called on the unpacked root before it boots (files to put in place). */
  beforeBoot?: (c: { root: string; at: (p: string) => string }) => Promise<void>;
  log?: (m: string) => void;
}

/** A booted container: systemd as PID 1, a private network with only loopback. */
export class HostContainer {
  private constructor(
    readonly dir: string,
    readonly root: string,
    private readonly nspawn: ChildProcess,
    readonly initPid: number,
    private readonly consoleLog: string,
  ) {}

  /** Host path of a path inside the container. */
  at(p: string): string {
    return path.join(this.root, p);
  }

  static async boot(tarball: string, options: BootOptions = {}): Promise<HostContainer> {
    await mkdir(WORK_ROOT, { recursive: true });
    const dir = await mkdtemp(path.join(WORK_ROOT, 'run-'));
    const root = path.join(dir, 'root');
    await mkdir(root);
    await host('tar', ['--zstd', '-xpf', tarball, '-C', root], { timeoutMs: 600_000 });
    await options.beforeBoot?.({ root, at: (p) => path.join(root, p) });
    const consoleLog = path.join(dir, 'console.log');
    const { openSync } = await import('node:fs');
    const out = openSync(consoleLog, 'a');
    const machine = `pbx-e2e-${path.basename(dir).slice(4).toLowerCase().replace(/[^a-z0-9]/g, '')}`;
    const nspawn = spawn(
      'systemd-nspawn',
      ['-q', '-b', '--private-network', '--register=no', '--keep-unit', `--machine=${machine}`, '--console=read-only', '-D', root],
      { stdio: ['ignore', out, out], env: { PATH: PLAIN_PATH, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1', LANG: 'C' }, detached: true },
    );
    const exited = new Promise<number | null>((resolve) => nspawn.once('exit', (code) => resolve(code)));
    // The container's init: nspawn's child process, once it is systemd.
    let initPid = 0;
    const deadline = Date.now() + 60_000;
    while (!initPid && Date.now() < deadline) {
      if (nspawn.exitCode !== null) break;
      const children = (await readFile(`/proc/${nspawn.pid}/task/${nspawn.pid}/children`, 'utf8').catch(() => '')).trim().split(/\s+/).filter(Boolean);
      for (const pid of children) {
        const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
        if (comm === 'systemd') initPid = Number(pid);
      }
      if (!initPid) await new Promise((r) => setTimeout(r, 50));
    }
    if (!initPid) {
      nspawn.kill('SIGKILL');
      await exited;
      throw new Error(`the container did not boot; console:\n${(await readFile(consoleLog, 'utf8').catch(() => '')).slice(-3000)}`);
    }
    const c = new HostContainer(dir, root, nspawn, initPid, consoleLog);
    // Until systemd has opened its private socket, systemctl cannot connect: ask again.
    let state: Exec = { code: null, stdout: '', stderr: '' };
    while (Date.now() < deadline + 60_000) {
      state = await c.exec(['systemctl', 'is-system-running', '--wait'], { timeoutMs: 120_000 });
      if (!/Failed to connect/.test(state.stderr)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!['running', 'degraded'].includes(state.stdout.trim())) {
      const failed = await c.exec(['systemctl', '--failed', '--no-pager']);
      await c.stop();
      throw new Error(`the container's systemd is ${state.stdout.trim() || state.stderr.trim()}:\n${failed.stdout}`);
    }
    return c;
  }

  /** Enters every namespace of the container (its files, processes, network) with a clean env. */
  private enter(all: boolean): string[] {
    return ['-t', String(this.initPid), ...(all ? ['-a'] : ['-n'])];
  }

  /** A command inside the container, as root, with a clean environment (PATH only, plus env). */
  exec(argv: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<Exec> {
    const child = this.spawn(argv, opts);
    return collect(child, opts.input, opts.timeoutMs ?? 300_000);
  }

  /** A shell script inside the container. */
  sh(script: string, opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Exec> {
    return this.exec(['/bin/sh', '-ec', script], opts);
  }

  /** A long-running command inside the container. */
  spawn(argv: string[], opts: { env?: Record<string, string> } = {}): ChildProcess {
    const env = Object.entries({ PATH: PLAIN_PATH, ...opts.env }).map(([k, v]) => `${k}=${v}`);
    return spawn('nsenter', [...this.enter(true), '--', '/usr/bin/env', '-i', ...env, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: PLAIN_PATH } });
  }

  /** A command of this machine (its files) in the container's network: loopback stand-ins, clients. */
  spawnInNetwork(argv: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    return spawn('nsenter', [...this.enter(false), '--', ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
  }

  execInNetwork(argv: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Exec> {
    return collect(this.spawnInNetwork(argv, opts), opts.input, opts.timeoutMs ?? 120_000);
  }

  async console(): Promise<string> {
    return readFile(this.consoleLog, 'utf8').catch(() => '');
  }

  /** Powers the container off (SIGKILL after 30 s) and removes its files. */
  async stop(): Promise<void> {
    if (process.env.PBX_AGENT_E2E_KEEP) {
      // Debugging: leave it running (enter with nsenter -t <initPid> -a) and its files in place.
      console.error(`      [e2e] kept running: nsenter -t ${this.initPid} -a bash   (files: ${this.dir})`);
      this.nspawn.unref();
      return;
    }
    if (this.nspawn.exitCode === null && this.nspawn.signalCode === null) {
      const exited = new Promise<void>((resolve) => this.nspawn.once('exit', () => resolve()));
      await this.exec(['systemctl', 'poweroff', '--no-block'], { timeoutMs: 10_000 }).catch(() => undefined);
      const timer = setTimeout(() => {
        try {
          process.kill(-this.nspawn.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }, 30_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Collects a child's output; kills it after timeoutMs. */
export function collect(child: ChildProcess, input: string | undefined, timeoutMs: number): Promise<Exec> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits before reading its input (nsenter into a container that is gone)
    // closes the pipe: its exit code says what happened, not an EPIPE thrown at the test run.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(input ?? '');
  });
}
