/**
 * The git source on its own: a real repository served over file://, SSH-signed commits checked
 * against an allowed-signers file (git's gpg.ssh.allowedSignersFile), local-path mode.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { fastForwarded, GitSource, type FetchResult, type GitSourceOptions } from '../agent/source/git.js';
import { removeTempRepos, tempDir } from './support/config-repo.js';
import { freePort } from './support/net.js';

const run = promisify(execFile);

async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await run('git', args, { cwd })).stdout.trim();
}

/**
 * Runs `fn` with an executable `name` (the shell script `script`) first on PATH: a stand-in that
 * records how the agent calls it. The agent's git children take PATH from this process.
 */
async function withFirstOnPath<T>(dir: string, name: string, script: string, fn: () => Promise<T>): Promise<T> {
  const bin = path.join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(bin, name), script, { mode: 0o755 });
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  try {
    return await fn();
  } finally {
    process.env.PATH = savedPath;
  }
}

/** A fetch result without its timing (checkoutMs, a number whenever the commit was checked out). */
function untimed(result: FetchResult): FetchResult {
  if (!result.ok) return result;
  const { checkoutMs, ...rest } = result;
  assert.equal(typeof checkoutMs, 'number');
  return rest;
}

describe('git source', () => {
  after(removeTempRepos);

  async function signedRemote() {
    const dir = await tempDir('pbx-agent-sig-');
    const key = path.join(dir, 'key');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key, '-C', 'ops@example.com']);
    const work = path.join(dir, 'work');
    await run('git', ['init', '-q', '-b', 'main', work]);
    for (const [k, v] of [['user.email', 'ops@example.com'], ['user.name', 'Ops'], ['gpg.format', 'ssh'], ['user.signingkey', `${key}.pub`]]) await git(work, 'config', k!, v!);
    const allowed = path.join(dir, 'allowed_signers');
    const pub = (await run('cat', [`${key}.pub`])).stdout.trim();
    await writeFile(allowed, `ops@example.com namespaces="git" ${pub}\n`);
    const commit = async (file: string, sign: boolean) => {
      await writeFile(path.join(work, file), file);
      await git(work, 'add', '-A');
      await git(work, 'commit', '-q', ...(sign ? ['-S'] : ['--no-gpg-sign']), '-m', file);
      return git(work, 'rev-parse', 'HEAD');
    };
    const options = (workDir: string): GitSourceOptions => ({
      url: `file://${work}`,
      branch: 'main',
      knownHostsFile: path.join(dir, 'known_hosts'),
      allowHistoryRewrite: false,
      allowedSignersFile: allowed,
      timeoutMs: 10_000,
      workDir,
    });
    return { dir, commit, options };
  }

  it('finds the fetched commit whether the branch ref is a loose file or packed by gc', async () => {
    const remote = await signedRemote();
    const first = await remote.commit('pbx.yaml', true);
    const clone = path.join(remote.dir, 'clone');
    const source = new GitSource({ ...remote.options(clone), allowedSignersFile: undefined } as GitSourceOptions);
    // A clone packs its refs; a later fetch writes the refs it updates as loose files.
    const cloned = await source.fetch();
    assert.ok(cloned.ok && cloned.commit === first, JSON.stringify(cloned));
    const second = await remote.commit('extensions.yaml', true);
    const loose = await source.fetch(first);
    assert.ok(loose.ok && loose.commit === second, JSON.stringify(loose));
    assert.equal((await readFile(path.join(clone, '.git/refs/remotes/origin/main'), 'utf8')).trim(), second);
    // No loose ref left: the answer comes from git itself.
    await git(clone, 'pack-refs', '--all');
    await assert.rejects(stat(path.join(clone, '.git/refs/remotes/origin/main')));
    const packed = await source.fetch(second);
    assert.ok(packed.ok && packed.commit === second, JSON.stringify(packed));
  });

  it('loads the commit and nothing else: stray files in the clone are removed, edited files restored', async () => {
    const remote = await signedRemote();
    const first = await remote.commit('pbx.yaml', true);
    const clone = path.join(remote.dir, 'clone');
    const source = new GitSource({ ...remote.options(clone), allowedSignersFile: undefined } as GitSourceOptions);
    assert.ok((await source.fetch()).ok);
    await mkdir(path.join(clone, 'extensions'), { recursive: true });
    await writeFile(path.join(clone, 'extensions/stray.yaml'), 'extensions: []\n');
    await writeFile(path.join(clone, '.gitignore'), 'ignored.yaml\n');
    await writeFile(path.join(clone, 'ignored.yaml'), 'x: 1\n');
    await writeFile(path.join(clone, 'pbx.yaml'), 'edited by hand\n');
    const again = await source.fetch(first);
    assert.ok(again.ok && again.commit === first, JSON.stringify(again));
    await assert.rejects(stat(path.join(clone, 'extensions/stray.yaml')));
    await assert.rejects(stat(path.join(clone, 'ignored.yaml')));
    await assert.rejects(stat(path.join(clone, '.gitignore')));
    assert.equal(await readFile(path.join(clone, 'pbx.yaml'), 'utf8'), 'pbx.yaml');
  });

  it('applies a commit signed by an allowed SSH key and refuses an unsigned one', async () => {
    const remote = await signedRemote();
    const signed = await remote.commit('pbx.yaml', true);
    const source = new GitSource(remote.options(path.join(remote.dir, 'clone')));
    const ok = await source.fetch();
    assert.deepEqual(untimed(ok), { ok: true, dir: path.join(remote.dir, 'clone'), revision: signed.slice(0, 12), commit: signed, localPath: false });

    const unsigned = await remote.commit('extensions.yaml', false);
    const refused = await source.fetch(signed);
    assert.equal(refused.ok, false);
    assert.deepEqual(refused, {
      ok: false,
      kind: 'unsigned',
      commit: unsigned,
      message: `commit ${unsigned.slice(0, 12)} has no valid SSH signature by a key in ${path.join(remote.dir, 'allowed_signers')}`,
    });
  });

  it('follows a changed source URL: the clone of the old one fetches from the new one', async () => {
    const remote = await signedRemote();
    const first = await remote.commit('pbx.yaml', true);
    const clone = path.join(remote.dir, 'clone');
    assert.equal((await new GitSource(remote.options(clone)).fetch()).ok, true);
    // The repository moves (a new git host): a bare copy with one more commit.
    const moved = path.join(remote.dir, 'moved.git');
    await run('git', ['clone', '-q', '--bare', remote.options(clone).url, moved]);
    const next = await remote.commit('extensions.yaml', true);
    await git(moved, 'fetch', '-q', remote.options(clone).url, 'main:main');
    const source = new GitSource({ ...remote.options(clone), url: `file://${moved}` });
    const r = await source.fetch(first);
    assert.deepEqual(untimed(r), { ok: true, dir: clone, revision: next.slice(0, 12), commit: next, localPath: false });
    assert.equal(await git(clone, 'remote', 'get-url', 'origin'), `file://${moved}`);
  });

  it('refuses a commit signed by a key that is not in the allowed-signers file', async () => {
    const remote = await signedRemote();
    await writeFile(path.join(remote.dir, 'allowed_signers'), 'someone@example.com namespaces="git" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE1SldbyGLaV3rMvnu+h+DkP1R5V7pF6hbzAqzVkydwR\n');
    await remote.commit('pbx.yaml', true);
    const refused = await new GitSource(remote.options(path.join(remote.dir, 'clone'))).fetch();
    assert.equal(refused.ok, false);
    assert.equal(!refused.ok && refused.kind, 'unsigned');
  });

  it('reports a branch that does not exist, and a repository that cannot be reached', async () => {
    const remote = await signedRemote();
    await remote.commit('pbx.yaml', true);
    const wrongBranch = await new GitSource({ ...remote.options(path.join(remote.dir, 'c1')), branch: 'production' }).fetch();
    assert.deepEqual(wrongBranch, { ok: false, kind: 'rejected', message: `branch production does not exist in file://${path.join(remote.dir, 'work')}` });
    const gone = await new GitSource({ ...remote.options(path.join(remote.dir, 'c2')), url: `file://${remote.dir}/nowhere.git` }).fetch();
    assert.equal(gone.ok, false);
    assert.equal(!gone.ok && gone.kind, 'unreachable');
    assert.match(!gone.ok ? gone.message : '', /^cannot clone file:\/\/.*nowhere\.git: fatal: /);
  });

  it('keeps the reason git gives on its next line: "unable to connect to 127.0.0.1:" is followed by the errno', async () => {
    const port = await freePort(); // nothing listens there
    const remote = await signedRemote();
    const gone = await new GitSource({ ...remote.options(path.join(remote.dir, 'c3')), url: `git://127.0.0.1:${port}/pbx.git` }).fetch();
    assert.equal(!gone.ok && gone.kind, 'unreachable');
    assert.match(!gone.ok ? gone.message : '', /fatal: unable to connect to 127\.0\.0\.1: .*Connection refused/);
  });

  it('fetches over ssh through one shared connection kept in a private directory', async () => {
    // An `ssh` first on PATH that records its options and runs the remote command locally, as
    // the git host's login shell would: what the agent asks of ssh, without an ssh server.
    const remote = await signedRemote();
    const first = await remote.commit('pbx.yaml', true);
    const log = path.join(remote.dir, 'ssh-args.log');
    const ssh = `#!/bin/sh\nprintf '%s\\n' "$*" >> ${JSON.stringify(log)}\nfor last; do :; done\nexec sh -c "$last"\n`;
    const control = path.join(remote.dir, 'state/ssh');
    const options = { ...remote.options(path.join(remote.dir, 'clone')), url: `ssh://git@pbx-git.example${path.join(remote.dir, 'work')}`, sshControlDir: control };
    await withFirstOnPath(remote.dir, 'ssh', ssh, async () => {
      const source = new GitSource(options);
      assert.deepEqual(untimed(await source.fetch()), { ok: true, dir: options.workDir, revision: first.slice(0, 12), commit: first, localPath: false });
      const next = await remote.commit('extensions.yaml', true);
      assert.equal((await source.fetch(first)).ok, true);
      const calls = (await readFile(log, 'utf8')).trim().split('\n');
      assert.equal(calls.length, 3, `the clone, then one fetch per fetch(): ${calls.join(' / ')}`);
      for (const call of calls) assert.ok(call.includes(`-o ControlMaster=auto -o ControlPath=${control}/%C -o ControlPersist=120`), call);
      assert.equal((await stat(control)).mode & 0o777, 0o700);
      assert.equal(await git(options.workDir, 'rev-parse', 'HEAD'), next);

      // A state directory so deep that the socket path would not fit: no shared connection.
      const deep = path.join(remote.dir, 'd'.repeat(60));
      await rm(log);
      assert.equal((await new GitSource({ ...options, workDir: path.join(remote.dir, 'clone2'), sshControlDir: deep }).fetch()).ok, true);
      assert.ok(!(await readFile(log, 'utf8')).includes('ControlMaster'));
    });
  });

  it('takes a fast-forward from the applied commit on the fetch\'s word, and asks git for the merge base otherwise', async () => {
    // A `git` first on PATH that records each command and runs the real one.
    const remote = await signedRemote();
    const first = await remote.commit('pbx.yaml', true);
    const log = path.join(remote.dir, 'git-args.log');
    const realGit = (await run('sh', ['-c', 'command -v git'])).stdout.trim();
    const wrapper = `#!/bin/sh\nprintf '%s\\n' "$*" >> ${JSON.stringify(log)}\nexec ${realGit} "$@"\n`;
    const clone = path.join(remote.dir, 'clone');
    const source = new GitSource({ ...remote.options(clone), allowedSignersFile: undefined } as GitSourceOptions);
    const mergeBases = async () => (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => /(^| )merge-base /.test(l));
    await withFirstOnPath(remote.dir, 'git', wrapper, async () => {
      assert.ok((await source.fetch()).ok);
      // The clone packed its refs, so where the branch was is not known without git this once.
      const between = await remote.commit('extensions.yaml', true);
      assert.ok((await source.fetch(first)).ok);
      assert.equal((await mergeBases()).length, 1);
      const second = await remote.commit('dialplan.yaml', true);
      const forward = await source.fetch(between);
      assert.ok(forward.ok && forward.commit === second, JSON.stringify(forward));
      assert.equal((await mergeBases()).length, 1, 'a fast-forward from the applied commit needs no merge-base');

      // The pushed branch is rewritten: the fetch reports a forced update, and git decides.
      await git(path.join(remote.dir, 'work'), 'commit', '-q', '--amend', '--no-gpg-sign', '-m', 'rewritten');
      const rewritten = await git(path.join(remote.dir, 'work'), 'rev-parse', 'HEAD');
      const refused = await source.fetch(second);
      assert.ok(!refused.ok && refused.kind === 'rejected' && refused.commit === rewritten, JSON.stringify(refused));
      assert.match(refused.message, /history was rewritten/);
      assert.equal((await mergeBases()).length, 2);
    });
  });

  it('reads a fast-forward only from the fetch report line of the branch, with both ids matching', () => {
    const from = '8f65861a0c7a4b5d3c2e1f00112233445566778899';
    const to = '8563f33b9d8e7f6a5b4c3d2e1f00112233445566';
    const ff = `From ssh://git.example/pbx\n   8f65861..8563f33  main       -> origin/main\n = [up to date]      dev        -> origin/dev\n`;
    assert.equal(fastForwarded(ff, 'main', from, to), true);
    assert.equal(fastForwarded(ff, 'dev', from, to), false);
    assert.equal(fastForwarded(ff, 'main', 'aaaaaaa' + from.slice(7), to), false);
    assert.equal(fastForwarded(ff, 'main', from, 'bbbbbbb' + to.slice(7)), false);
    assert.equal(fastForwarded(` + 8f65861...8563f33 main       -> origin/main  (forced update)\n`, 'main', from, to), false);
    assert.equal(fastForwarded(`   8f65861..8563f33  release    -> origin/main\n`, 'main', from, to), false);
  });

  it('reads a local directory as it is, uncommitted edits included', async () => {
    const dir = await tempDir('pbx-agent-local-');
    const result = await new GitSource({ url: dir, branch: 'main', knownHostsFile: '/nonexistent', allowHistoryRewrite: false, timeoutMs: 1000, workDir: '/nonexistent' }).fetch();
    assert.deepEqual(result, { ok: true, dir, revision: 'unversioned', localPath: true });
  });
});
