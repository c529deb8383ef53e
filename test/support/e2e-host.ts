/**
 * A fresh PBX host as a user gets one, for the end-to-end test (test/e2e/host.test.ts) and the
 * real-Asterisk benchmark (test/bench/real-asterisk.ts): Debian unstable booted under its own
 * systemd (host-container.ts), the release tarball (`npm pack`) unpacked on it, ready for
 * bootstrap/bootstrap.sh to be run the way cloud-init runs user data. The config repo lives on a
 * git host over ssh inside the container; IMDS and the EC2 API are loopback stand-ins; phones are
 * sipp on an address outside local_net.
 */
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { appendFile, copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { md5Credential } from '../../agent/resolve/index.js';
import { callee, calleeAnswer, caller, conferenceCaller, register } from '../e2e/sipp.js';
import { REPO_ROOT } from './bootstrap-root.js';
import { HostContainer, WORK_ROOT, type Exec } from './host-container.js';
import type { NodeDist } from './node-lines.js';

const run = promisify(execFile);

export const ELASTIC_IP = '203.0.113.10';
/** The instance's address in the VPC (as IMDS's local-ipv4 says), inside local_net. */
export const PRIVATE_IP = '172.31.20.5';
/** Where the phones are: outside local_net, as phones on 4G or a home network are. */
export const PHONES_IP = '198.51.100.20';
export const REPO = 'ssh://git@127.0.0.1/srv/git/config.git';
export const WEBHOOK_SECRET = 'whsec-e2e-Correct-Horse-9f3Kq2';
export const PASSWORD = (n: string) => `Sip-${n}-Horse-Battery-7k`;
export const BOOTSTRAP = '/srv/e2e/release/package/bootstrap/bootstrap.sh';

export const PBX_YAML = `version: 1
network:
  external_address: auto
  local_net: [172.31.0.0/16]
  transports:
    udp:
      port: 5060
rtp:
  port_start: 10000
  port_end: 20000
codec_profiles:
  voice:
    audio: [ulaw, alaw, g722, opus]
  video:
    audio: [ulaw, alaw, g722, opus]
    video: [h264, vp8]
defaults:
  context: internal
  codec_profile: voice
  max_contacts: 3
dialplan:
  contexts:
    internal:
      includes: []
conferences:
  - number: "800"
    name: Team room
    max_members: 4
    codec_profile: video
`;

/** Phones with the video profile: the first extension, as a meeting-room phone would have. */
const VIDEO_PHONES = new Set(['2001']);

export function extensionsYaml(numbers: string[]): string {
  return `extensions:\n${numbers
    .map((n) => `  - number: "${n}"\n    name: Phone ${n}\n    md5: ${md5Credential(n, 'asterisk', PASSWORD(n))}\n${VIDEO_PHONES.has(n) ? '    codec_profile: video\n' : ''}`)
    .join('')}`;
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('git', args, {
    cwd,
    env: {
      ...process.env,
      GIT_AUTHOR_NAME: 'e2e',
      GIT_AUTHOR_EMAIL: 'e2e@example.org',
      GIT_COMMITTER_NAME: 'e2e',
      GIT_COMMITTER_EMAIL: 'e2e@example.org',
    },
  });
  return stdout.trim();
}

/** uid and gid of a user in the container's own passwd file. */
export async function ids(root: string, user: string): Promise<{ uid: number; gid: number }> {
  const line = (await readFile(path.join(root, 'etc/passwd'), 'utf8')).split('\n').find((l) => l.startsWith(`${user}:`));
  if (!line) throw new Error(`no user ${user} in the container`);
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await run('chown', ['-R', `${uid}:${gid}`, dir]);
}

export interface E2eHostOptions {
  /** Names the host's work folder and transcript under WORK_ROOT; default node<major>. */
  label?: string;
  /**
   * Writes the config repo's first commit into the operator's clone (a host path); default
   * pbx.yaml and two phones, 2001 and 2002.
   */
  seed?: (clone: string) => Promise<void>;
}

async function twoPhones(clone: string): Promise<void> {
  await mkdir(path.join(clone, 'extensions'));
  await writeFile(path.join(clone, 'pbx.yaml'), PBX_YAML);
  await writeFile(path.join(clone, 'extensions/staff.yaml'), extensionsYaml(['2001', '2002']));
}

/** One fresh host: the container, the git host's repository, the AWS stand-ins. */
export class E2eHost {
  transcript: string;
  private standins: ChildProcess | undefined;
  private constructor(
    readonly c: HostContainer,
    readonly node: NodeDist,
    readonly work: string,
    label: string,
  ) {
    this.transcript = path.join(WORK_ROOT, `transcript-${label}.txt`);
  }

  static async start(rootfs: string, release: string, node: NodeDist, options: E2eHostOptions = {}): Promise<E2eHost> {
    const label = options.label ?? `node${node.major}`;
    const work = path.join(WORK_ROOT, `work-${label}`);
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    const c = await HostContainer.boot(rootfs, {
      beforeBoot: async ({ root, at }) => {
        // As on EC2, the host name resolves to the private address.
        await writeFile(at('/etc/hosts'), `127.0.0.1\tlocalhost\n${PRIVATE_IP}\tpbx-e2e\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
        await mkdir(at('/srv/e2e/release'), { recursive: true });
        await run('tar', ['-xzf', release, '-C', at('/srv/e2e/release')]);
        await copyFile(node.tarball, at(`/srv/e2e/${path.basename(node.tarball)}`));
        await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pbx-agent-e2e', '-f', at('/srv/e2e/deploy_key')]);
        const gitUser = await ids(root, 'git');
        await mkdir(at('/home/git/.ssh'), { recursive: true, mode: 0o700 });
        await copyFile(at('/srv/e2e/deploy_key.pub'), at('/home/git/.ssh/authorized_keys'));
        await chownTree(at('/home/git/.ssh'), gitUser.uid, gitUser.gid);
        const hostKey = (await readFile(at('/etc/ssh/ssh_host_ed25519_key.pub'), 'utf8')).split(' ').slice(0, 2).join(' ');
        await writeFile(at('/srv/e2e/known_hosts'), `127.0.0.1 ${hostKey}\n`);
        await writeFile(at('/srv/e2e/webhook.secret'), `${WEBHOOK_SECRET}\n`, { mode: 0o600 });
        // The config repo on the git host, and an operator's clone of it there (later pushes
        // are made inside the container, as the git user who owns the repository).
        await run('git', ['init', '-q', '--bare', '--initial-branch=main', at('/srv/git/config.git')]);
        const clone = at('/home/git/clone');
        await git(work, 'clone', '-q', at('/srv/git/config.git'), clone);
        await (options.seed ?? twoPhones)(clone);
        await git(clone, 'add', '.');
        await git(clone, 'commit', '-q', '-m', options.seed ? 'first commit' : 'two phones');
        await git(clone, 'push', '-q', 'origin', 'HEAD:main');
        await git(clone, 'remote', 'set-url', 'origin', '/srv/git/config.git');
        await chownTree(at('/srv/git/config.git'), gitUser.uid, gitUser.gid);
        await chownTree(clone, gitUser.uid, gitUser.gid);
        await mkdir(at('/srv/e2e/sipp'));
        await writeFile(at('/srv/e2e/sipp/register-200.xml'), register(200));
        await writeFile(at('/srv/e2e/sipp/register-401.xml'), register(401));
        await writeFile(at('/srv/e2e/sipp/callee.xml'), callee(30_000));
        await writeFile(at('/srv/e2e/sipp/callee-answer.xml'), calleeAnswer('/srv/e2e/sipp/answered'));
        await writeFile(at('/srv/e2e/sipp/caller.xml'), caller(ELASTIC_IP));
        await writeFile(at('/srv/e2e/sipp/call-2002.csv'), 'SEQUENTIAL\n2002;\n');
        await writeFile(at('/srv/e2e/sipp/conference-video.xml'), conferenceCaller(ELASTIC_IP, true, 8000));
        await writeFile(at('/srv/e2e/sipp/conference-audio.xml'), conferenceCaller(ELASTIC_IP, false, 3000));
        await writeFile(at('/srv/e2e/sipp/room-800.csv'), 'SEQUENTIAL\n800;\n');
      },
    });
    const h = new E2eHost(c, node, work, label);
    try {
      await writeFile(h.transcript, `# pbx-agent end to end, Node.js ${node.version}, ${new Date().toISOString()}\n`);
      await h.startStandins();
    } catch (e) {
      await h.stop();
      throw e;
    }
    return h;
  }

  async note(title: string, text = ''): Promise<void> {
    await appendFile(this.transcript, `\n== ${title}\n${text.trimEnd()}${text ? '\n' : ''}`);
  }

  /**
   * The network of an EC2 instance, on the container's loopback: its private address in the VPC
   * (IMDS's local-ipv4), the Elastic IP that EC2's 1:1 NAT delivers to it, and IMDS. Phones sit on
   * an address "on the internet" that the instance reaches from its private address, so Asterisk
   * sees what it sees on EC2: its own address inside local_net, the phone's outside.
   */
  private async startStandins(): Promise<void> {
    for (const cmd of [
      ['ip', 'addr', 'add', `${PRIVATE_IP}/32`, 'dev', 'lo'],
      ['ip', 'addr', 'add', `${ELASTIC_IP}/32`, 'dev', 'lo'],
      ['ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo'],
      ['ip', 'addr', 'add', `${PHONES_IP}/32`, 'dev', 'lo'],
      ['ip', 'route', 'replace', 'local', PHONES_IP, 'dev', 'lo', 'table', 'local', 'src', PRIVATE_IP],
    ]) {
      const r = await this.c.execInNetwork(cmd);
      assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
    }
    const child = this.c.spawnInNetwork([process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'test/e2e/aws-standins.ts'), ELASTIC_IP]);
    this.standins = child;
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.stderr!.on('data', (d: Buffer) => (err += d.toString('utf8')));
      child.once('exit', (code) => reject(new Error(`the AWS stand-ins exited (${code}): ${err}`)));
    });
    this.ec2Url = (JSON.parse(line) as { ec2: string }).ec2;
  }

  ec2Url = '';

  bootstrapArgs(): string[] {
    return [
      BOOTSTRAP,
      '--repo', REPO,
      '--deploy-key', '/srv/e2e/deploy_key',
      '--known-hosts', '/srv/e2e/known_hosts',
      '--webhook-listen', '127.0.0.1:9090',
      '--webhook-secret-file', '/srv/e2e/webhook.secret',
      '--node-dist', `/srv/e2e/${path.basename(this.node.tarball)}`,
      '--ec2-endpoint', this.ec2Url,
    ];
  }

  /**
   * The bootstrap as cloud-init runs user data: `env -i` with a plain PATH, no HOME, no terminal.
   * `onLine` sees its output as it comes.
   */
  async bootstrap(onLine?: (line: string) => void): Promise<Exec & { lastLine: string }> {
    const child = this.c.spawn(['bash', ...this.bootstrapArgs()], { env: { PBX_AGENT_BOOTSTRAP_TEST_HOST: 'debian-unstable' } });
    child.stdin!.end();
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString('utf8');
      stdout += text;
      partial += text;
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) onLine?.(l);
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    const lines = stdout.trimEnd().split('\n');
    return { code, stdout, stderr, lastLine: lines[lines.length - 1] ?? '' };
  }

  /** The agent's JSON log lines from the journal. */
  async journal(): Promise<Array<Record<string, unknown>>> {
    const r = await this.c.exec(['journalctl', '-u', 'pbx-agent', '-o', 'cat', '--no-pager']);
    return r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** A phone: sipp on the phones' address, talking to the Elastic IP as phones do. */
  sippArgs(scenario: string, user: string, password: string, port: number, extra: string[] = []): string[] {
    return [
      'sipp', `${ELASTIC_IP}:5060`, '-sf', `/srv/e2e/sipp/${scenario}.xml`, '-s', user, '-au', user, '-ap', password,
      '-i', PHONES_IP, '-p', String(port), '-m', '1', '-timeout', '15', '-timeout_error', '-max_recv_loops', '100',
      '-trace_err', '-error_file', `/srv/e2e/sipp/${scenario}-${user}-errors.log`, '-aa', ...extra,
    ];
  }

  sipp(scenario: string, user: string, password: string, port: number, extra: string[] = []): Promise<Exec> {
    return this.c.exec(this.sippArgs(scenario, user, password, port, extra), { timeoutMs: 30_000 });
  }

  /** Seconds since Asterisk last reloaded a module, and the time it was read. */
  async lastReload(): Promise<{ secondsAgo: number; at: number }> {
    const r = await this.c.exec(['asterisk', '-rx', 'core show uptime seconds']);
    const m = /Last reload: (\d+)/.exec(r.stdout);
    assert.ok(m, `no "Last reload" in: ${r.stdout}${r.stderr}`);
    return { secondsAgo: Number(m[1]), at: Date.now() };
  }

  /** An operator's `git commit` and `git push` on the git host. */
  async pushExtensions(numbers: string[]): Promise<string> {
    await writeFile(this.c.at('/home/git/clone/extensions/staff.yaml'), extensionsYaml(numbers));
    const r = await this.c.exec([
      'runuser', '-u', 'git', '--', 'sh', '-ec',
      `cd /home/git/clone && git -c user.name=e2e -c user.email=e2e@example.org commit -q -am "phones ${numbers.join(' ')}" && git push -q origin HEAD:main && git rev-parse HEAD`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }

  /** An operator's commit of whatever changed in the clone (files written with c.at), pushed. */
  async pushAll(message: string): Promise<string> {
    const gitUser = await ids(this.c.root, 'git');
    await chownTree(this.c.at('/home/git/clone'), gitUser.uid, gitUser.gid);
    const r = await this.c.exec([
      'runuser', '-u', 'git', '--', 'sh', '-ec',
      'cd /home/git/clone && git add -A && git -c user.name=e2e -c user.email=e2e@example.org commit -q -m "$1" && git push -q origin HEAD:main && git rev-parse HEAD',
      'sh', message,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }

  /** An operator's commit of pbx.yaml, pushed to the git host. */
  async pushSite(yaml: string, message: string): Promise<string> {
    await writeFile(this.c.at('/home/git/clone/pbx.yaml'), yaml);
    const r = await this.c.exec([
      'runuser', '-u', 'git', '--', 'sh', '-ec',
      `cd /home/git/clone && git -c user.name=e2e -c user.email=e2e@example.org commit -q -am "${message}" && git push -q origin HEAD:main && git rev-parse HEAD`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.trim();
  }

  /** Waits for the agent's run of `commit` and returns its reconcile.finished line. */
  async finished(commit: string): Promise<Record<string, unknown> | undefined> {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const line = (await this.journal()).find((l) => l.event === 'reconcile.finished' && l.revision === commit.slice(0, 12));
      if (line) return line;
      await new Promise((r) => setTimeout(r, 300));
    }
    return undefined;
  }

  /** A GitHub push webhook to the agent, sent from inside the container's network. */
  async webhook(commit: string): Promise<number> {
    return (await this.webhookTimed(commit)).status;
  }

  /**
   * The webhook, and when its request went out (epoch ms, this machine's clock, which the
   * container shares): the sender's start-up is not part of what is timed from it.
   */
  async webhookTimed(commit: string): Promise<{ status: number; sentAt: number }> {
    const body = JSON.stringify({ ref: 'refs/heads/main', after: commit, repository: { full_name: 'ops/pbx-config' } });
    const signature = `sha256=${createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex')}`;
    const script = `const r=require('http').request({host:'127.0.0.1',port:9090,method:'POST',path:'/',headers:{'content-type':'application/json','x-github-event':'push','x-hub-signature-256':process.argv[1]}},(res)=>{res.resume();res.on('end',()=>process.stdout.write(res.statusCode+' '+t))});const t=Date.now();r.end(process.argv[2]);`;
    const r = await this.c.execInNetwork([process.execPath, '-e', script, signature, body]);
    const [status, sentAt] = r.stdout.trim().split(' ').map(Number);
    return { status: status ?? NaN, sentAt: sentAt ?? NaN };
  }

  async agentPid(): Promise<number> {
    return Number((await this.c.exec(['systemctl', 'show', '-p', 'MainPID', '--value', 'pbx-agent'])).stdout.trim());
  }

  /** The agent's resident memory: all of it, anonymous (heap, malloc) and file-backed (binary, libraries). */
  async agentMemory(): Promise<{ rss: number; anon: number; file: number }> {
    const status = (await this.c.exec(['cat', `/proc/${await this.agentPid()}/status`])).stdout;
    const mb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
    return { rss: mb('VmRSS'), anon: mb('RssAnon'), file: mb('RssFile') };
  }

  async stop(): Promise<void> {
    this.standins?.kill('SIGTERM');
    await this.c.stop();
  }
}
