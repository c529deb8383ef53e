/**
 * The daemon as a real child process: a real git remote (git daemon on 127.0.0.1), the loopback
 * Asterisk, real signals, real webhooks.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile, chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { StateStore } from '../agent/record/state.js';
import { readDrifts } from '../agent/drift/recorder.js';
import { acquireLock, LOCK_FILE } from '../agent/record/lock.js';
import { BASE_PBX, extensionsYaml, removeTempRepos, tempDir, testMd5 } from './support/config-repo.js';
import { daemonSettings, DaemonProcess, freePort, WEBHOOK_SECRET } from './support/daemon-process.js';
import { GitRemote } from './support/git-remote.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';
import { post, pushBody, signedHeaders } from './support/webhook-client.js';


/** A CLI child process that does not block this process (which serves the fake AMI and git). */
function cliProcess(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const handle = {
    done: false,
    result: new Promise<{ code: number | null; out: string; err: string }>((resolve) =>
      child.once('close', (code) => {
        handle.done = true;
        resolve({ code, out, err });
      }),
    ),
  };
  return handle;
}

describe('daemon', function () {
  this.timeout(60_000);
  let host: PbxHost;
  let remote: GitRemote;
  let daemon: DaemonProcess | undefined;
  let port: number;

  beforeEach(async () => {
    host = await startPbxHost();
    remote = await GitRemote.create();
    await remote.commit({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(['1001']) }, 'initial');
    await remote.push();
    await remote.serve();
    port = await freePort();
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await remote.stopServing();
    await host.stop();
  });
  after(removeTempRepos);

  async function startDaemon(extra: Partial<Parameters<typeof daemonSettings>[1]> = {}): Promise<DaemonProcess> {
    daemon = DaemonProcess.start(await daemonSettings(host, { url: remote.url, webhookPort: port, ...extra }));
    const first = await daemon.finished(1, 'the startup reconcile');
    assert.equal(first.status, 'applied');
    return daemon;
  }
  async function pushAndNotify(numbers: string[], provider: 'github' | 'gitea' | 'gitlab' = 'github'): Promise<string> {
    const commit = await remote.commit({ 'extensions/staff.yaml': extensionsYaml(numbers) }, `extensions ${numbers.join(',')}`);
    await remote.push();
    const body = pushBody('main', commit);
    const r = await post(port, body, signedHeaders(provider, body, WEBHOOK_SECRET));
    assert.equal(r.status, 202, r.text);
    return commit;
  }

  it('applies and verifies a pushed extension after a signed webhook', async () => {
    const d = await startDaemon();
    const commit = await pushAndNotify(['1001', '1002']);
    const second = await d.finished(2);
    assert.equal(second.status, 'applied');
    assert.equal(second.revision, commit.slice(0, 12));
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
    assert.equal((second.verification as { ok: boolean }).ok, true);
    assert.equal(d.events('webhook.push').length, 1);
    // Where the push's time went starts with the git fetch.
    const stages = second.stages as Record<string, number>;
    assert.equal(Object.keys(stages)[0], 'fetch');
    assert.ok(stages.fetch! > 0, JSON.stringify(stages));
    // And with what started the run, and how long it waited to start.
    const trigger = second.trigger as { reason: string; waitedMs: number };
    assert.equal(trigger.reason, 'webhook');
    assert.ok(trigger.waitedMs >= 0, JSON.stringify(trigger));
  });

  it('applies a pushed extension as live objects, then folds them into pjsip.conf once pushes stop', async () => {
    await host.stop();
    host = await startPbxHost({ liveObjects: { foldAfterSeconds: 1 } });
    const d = await startDaemon();
    const reloads = host.asterisk.reloadCount('res_pjsip');
    await pushAndNotify(['1001', '1002']);
    const second = await d.finished(2);
    assert.equal(second.status, 'applied');
    assert.equal(second.liveObjectEdits, 4);
    assert.equal(host.asterisk.reloadCount('res_pjsip'), reloads, 'the push reloaded res_pjsip');
    assert.ok(host.asterisk.astdbEntries().some(([k]) => k === '/pbx-agent-live/endpoint/1002'));

    await d.waitFor((lines) => lines.some((l) => l.event === 'live.folded'), 'the fold');
    assert.equal(host.asterisk.reloadCount('res_pjsip'), reloads + 1);
    assert.deepEqual(host.asterisk.astdbEntries().filter(([k]) => k.startsWith('/pbx-agent-live/')), []);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
    assert.equal((await new StateStore(host.stateDir).read()).live, undefined);
    assert.equal(d.events('live.folded').length, 1);
  });

  it('accepts GitLab and Gitea/Forgejo webhooks too, and ignores pushes to other branches', async () => {
    const d = await startDaemon();
    await pushAndNotify(['1001', '1002'], 'gitlab');
    await d.finished(2);
    await pushAndNotify(['1001', '1002', '1003'], 'gitea');
    await d.finished(3);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
    const other = pushBody('feature/x');
    const r = await post(port, other, signedHeaders('github', other, WEBHOOK_SECRET));
    assert.deepEqual(r, { status: 202, text: 'ignored: push to refs/heads/feature/x\n' });
  });

  it('refuses webhooks with a wrong or missing signature (401) and oversized bodies (413), and syncs nothing', async () => {
    const d = await startDaemon();
    await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', '1009']) });
    await remote.push();
    const body = pushBody();
    assert.equal((await post(port, body, signedHeaders('github', body, 'not-the-secret'))).status, 401);
    assert.equal((await post(port, body, { 'x-github-event': 'push' })).status, 401);
    assert.equal((await post(port, body, signedHeaders('gitlab', body, 'wrong'))).status, 401);
    const tampered = body.replace('main', 'mainx');
    assert.equal((await post(port, tampered, signedHeaders('github', body, WEBHOOK_SECRET))).status, 401, 'signature over a different body');
    const huge = Buffer.alloc(70_000, 0x20);
    assert.equal((await post(port, huge, signedHeaders('github', huge.toString(), WEBHOOK_SECRET))).status, 413);
    // Every refused request was answered 401; the log has one line for the burst, not four.
    await d.waitFor((l) => l.some((x) => x.event === 'webhook.rejected'), 'a webhook.rejected line');
    assert.equal(d.events('webhook.rejected').length, 1, 'refusals within a minute are not logged one by one');
    assert.equal(d.events('reconcile.finished').length, 1, 'no sync was triggered');
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001']);
  });

  it('keeps the previous config when a push is invalid, names file:line, keeps running, and applies the next good push', async () => {
    const d = await startDaemon();
    const bad = await remote.commit({ 'extensions/staff.yaml': 'extensions:\n  - { number: "10a1", md5: ' + testMd5('1') + ' }\n' });
    await remote.push();
    const body = pushBody('main', bad);
    await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET));
    const second = await d.finished(2);
    assert.equal(second.status, 'invalid');
    const invalid = d.events('reconcile.invalid')[0]!;
    assert.deepEqual(invalid.errors, ['extensions/staff.yaml:2:15: extensions[0].number: expected an extension number of 2 to 12 digits, e.g. "1001", found "10a1"']);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001'], 'the last-known-good config stays live');

    await pushAndNotify(['1001', '1004']);
    // A retry of the invalid commit (after its backoff) may come first; the push is applied next.
    await d.waitFor((l) => l.filter((x) => x.event === 'reconcile.finished').slice(2).some((x) => x.status === 'applied'), 'the good push applied');
    assert.ok(d.events('reconcile.finished').slice(2).every((x) => x.status === 'applied' || x.status === 'invalid'));
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1004']);
  });

  it('refuses a force-pushed history rewrite and names both commits', async () => {
    const d = await startDaemon();
    const base = await remote.head();
    const good = await pushAndNotify(['1001', '1002']);
    await d.finished(2);
    await remote.resetHard(base);
    const rewritten = await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', '1666']) }, 'rewrite');
    await remote.push(true);
    const body = pushBody('main', rewritten);
    await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET));
    await d.waitFor((l) => l.some((x) => x.event === 'source.rejected'), 'source.rejected');
    const rejected = d.events('source.rejected')[0]!;
    assert.equal(rejected.commit, rewritten);
    assert.equal(rejected.applied, good);
    assert.match(String(rejected.msg), /does not descend from the applied/);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
    assert.match((await new StateStore(host.stateDir).read()).sourceRejected?.reason ?? '', /history was rewritten/);
  });

  it('backs off while the remote is unreachable and recovers when it returns', async () => {
    const d = await startDaemon({ sync: '* * * * * *' });
    await remote.stopServing();
    await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', '1005']) });
    await remote.push();
    await d.waitFor((l) => l.filter((x) => x.event === 'source.unreachable').length >= 2, 'two failed fetches');
    await d.waitFor((l) => l.some((x) => x.event === 'sync.backoff'), 'a scheduled run skipped for backoff');
    // Failed fetches are failed runs: `status` counts them towards unhealthy.
    const down = await new StateStore(host.stateDir).read();
    assert.equal(down.lastRun?.status, 'failed');
    assert.match(down.lastRun?.error ?? '', /127\.0\.0\.1/);
    assert.ok(down.consecutiveFailures >= 2, `consecutiveFailures ${down.consecutiveFailures}`);
    await remote.serve();
    await d.waitFor(() => host.asterisk.liveEndpoints().includes('1005'), 'recovery after the remote returned');
    await d.waitFor((l) => l.some((x) => x.event === 'reconcile.finished' && x.status === 'applied' && x.revision !== l.find((y) => y.event === 'reconcile.finished')?.revision), 'the recovered run recorded');
    assert.equal((await new StateStore(host.stateDir).read()).consecutiveFailures, 0);
  });

  it('syncs on SIGHUP', async () => {
    const d = await startDaemon();
    await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', '1006']) });
    await remote.push();
    d.signal('SIGHUP');
    const second = await d.finished(2);
    assert.equal(second.status, 'applied');
    assert.equal(d.events('daemon.sighup').length, 1);
  });

  it('on SIGTERM finishes the reconcile in progress, then exits 0', async () => {
    const d = await startDaemon();
    host.asterisk.hangReloads('res_pjsip');
    const seen = host.asterisk.actionsReceived().length;
    await pushAndNotify(['1001', '1007']);
    const reloadStarted = () => host.asterisk.actionsReceived().slice(seen).some((a) => a.action.toLowerCase() === 'reload');
    while (!reloadStarted()) await new Promise((r) => setTimeout(r, 10));
    d.signal('SIGTERM');
    await d.waitFor((l) => l.some((x) => x.event === 'daemon.stopping'), 'daemon.stopping');
    assert.equal(d.events('daemon.stopping')[0]!.busy, true);
    host.asterisk.hangReloads(null);
    assert.equal(await d.exit(), 0);
    const finished = d.events('reconcile.finished');
    assert.equal(finished[finished.length - 1]!.status, 'applied', 'the run in progress completed');
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1007']);
    const order = d.lines.map((l) => l.event).filter((e) => e === 'reconcile.finished' || e === 'daemon.stopped');
    assert.equal(order[order.length - 1], 'daemon.stopped');
  });

  it('reports a managed file edited by hand as drift.file, and leaves it under policy alert', async () => {
    const d = await startDaemon();
    const file = path.join(host.configDir, 'pbx-agent/pjsip.conf');
    const original = await readFile(file, 'utf8');
    await writeFile(file, original.replace('max_contacts=3', 'max_contacts=30'));
    await d.waitFor((l) => l.some((x) => x.event === 'drift.file'), 'drift.file');
    const drift = d.events('drift.file')[0]!;
    assert.equal(drift.file, 'pbx-agent/pjsip.conf');
    assert.equal(drift.action, 'alert');
    assert.match(String(drift.diff), /^-max_contacts=3$/m);
    assert.match(String(drift.diff), /^\+max_contacts=30$/m);
    assert.ok(!String(drift.diff).includes(testMd5('1001')), 'credentials are redacted in the diff');
    assert.match(await readFile(file, 'utf8'), /max_contacts=30/);
  });

  it('does not take its own writes for hand edits when a run leaves the change pending', async () => {
    const d = await startDaemon();
    // Asterisk goes down after the agent learned its rights: the change is written, every reload is
    // put off, and the change stays pending run after run (retried on the backoff).
    host.asterisk.shuttingDown(true);
    const commit = await remote.commit({ 'extensions/staff.yaml': extensionsYaml([{ number: '1001', extra: 'max_contacts: 7' }]) }, 'max_contacts 7');
    await remote.push();
    const body = pushBody('main', commit);
    assert.equal((await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET))).status, 202);
    await d.waitFor((l) => l.filter((x) => x.event === 'reconcile.finished' && x.status === 'failed').length >= 3, 'three runs put off');
    assert.match(await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8'), /max_contacts=7/, 'the change was written');
    host.asterisk.shuttingDown(false);
    await d.waitFor((l) => l.some((x) => x.event === 'reconcile.finished' && x.status === 'applied' && x.revision === commit.slice(0, 12)), 'the pending change applied');
    assert.deepEqual(d.events('drift.file'), []);
  });

  it('reports a hand edit of the managed confbridge.conf as drift.file, the room PIN redacted', async () => {
    const secrets = path.join(host.root, 'etc/pbx-agent/secrets');
    await mkdir(secrets, { recursive: true });
    await writeFile(path.join(secrets, 'room-pin'), '47114711\n');
    await chmod(path.join(secrets, 'room-pin'), 0o600);
    await remote.commit({ 'pbx.yaml': `${BASE_PBX}conferences:\n  - number: "800"\n    max_members: 5\n    pin: { secret: room-pin }\n` }, 'a room');
    await remote.push();
    const d = await startDaemon();
    const file = path.join(host.configDir, 'pbx-agent/confbridge.conf');
    const original = await readFile(file, 'utf8');
    assert.match(original, /^pin=47114711$/m);
    await writeFile(file, original.replace('max_members=5', 'max_members=50').replace('pin=47114711', 'pin=90261309'));
    await d.waitFor((l) => l.some((x) => x.event === 'drift.file'), 'drift.file');
    const drift = d.events('drift.file')[0]!;
    assert.equal(drift.file, 'pbx-agent/confbridge.conf');
    assert.match(String(drift.diff), /^\+max_members=50$/m);
    assert.match(String(drift.diff), /^\+pin=<redacted [0-9a-f]{8}>$/m);
    assert.ok(!JSON.stringify(d.lines).includes('47114711') && !JSON.stringify(d.lines).includes('90261309'), 'a PIN reached the log');
  });

  it('puts a hand-edited managed file back under policy restore', async () => {
    const d = await startDaemon({ filePolicy: 'restore' });
    const file = path.join(host.configDir, 'pbx-agent/pjsip.conf');
    const original = await readFile(file, 'utf8');
    await writeFile(file, original.replace('max_contacts=3', 'max_contacts=30'));
    await d.waitFor((l) => l.some((x) => x.event === 'drift.file'), 'drift.file');
    await d.finished(2, 'the restoring reconcile');
    assert.equal(d.events('drift.file')[0]!.action, 'restore');
    const restored = await readFile(file, 'utf8');
    assert.match(restored, /^max_contacts=3$/m);
    assert.equal(host.asterisk.liveState().aors['1001']?.max_contacts, '3');
  });

  it('reports live Asterisk state that differs from the applied config as drift.asterisk', async () => {
    const d = await startDaemon({ drift: '* * * * * *' });
    // Someone points pjsip.conf somewhere else and reloads by hand: the agent's endpoints vanish.
    await writeFile(path.join(host.configDir, 'pjsip.conf'), '; emptied by hand\n');
    await host.client.reload('res_pjsip', 2000);
    await d.waitFor((l) => l.some((x) => x.event === 'drift.asterisk'), 'drift.asterisk');
    const drift = d.events('drift.asterisk')[0]!;
    assert.match(String(drift.msg), /endpoint 1001 presence: expected present, Asterisk has missing/);
    assert.match((await readDrifts(host.stateDir)).asterisk?.message ?? '', /endpoint 1001 presence/);
  });

  it('folds the pushes that arrive while a run is in progress into one follow-up: 100 pushes, at most two runs', async () => {
    const d = await startDaemon();
    const commits: string[] = [];
    for (let i = 0; i < 100; i++) commits.push(await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', String(2000 + i)]) }, `push ${i}`));
    // Holding the reconcile lock keeps the first push's run waiting while the other 99 arrive.
    const release = await acquireLock(path.join(host.stateDir, LOCK_FILE), 0);
    for (const commit of commits) {
      await remote.pushCommit(commit);
      const body = pushBody('main', commit);
      assert.equal((await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET))).status, 202);
    }
    await d.waitFor((l) => l.filter((x) => x.event === 'webhook.push').length === 100, 'all 100 pushes received');
    assert.equal(d.events('reconcile.finished').length, 1, 'only the startup run so far: the first push\'s run waits for the lock');
    await release();
    const last = commits[commits.length - 1]!;
    await d.waitFor((l) => l.some((x) => x.event === 'reconcile.finished' && x.revision === last.slice(0, 12) && x.status === 'applied'), 'the last commit applied');
    await d.waitFor((l) => l.filter((x) => x.event === 'reconcile.finished').length >= 3, 'the follow-up run');
    const runs = d.events('reconcile.finished').slice(1);
    const told = runs.map((r) => `${r.revision} ${r.status}`).join(', ');
    assert.equal(runs[0]?.revision, last.slice(0, 12), told);
    assert.equal(runs.length, 2, told);
    assert.equal(runs[1]?.status, 'unchanged', told);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '2099']);
  }).timeout(300_000); // 100 commits and pushes: slow on a loaded machine, and not what is measured

  it('re-renders at once when a file changes in a local-path config repo', async () => {
    const local = await tempDir('pbx-agent-local-');
    await mkdir(path.join(local, 'extensions'), { recursive: true });
    await writeFile(path.join(local, 'pbx.yaml'), BASE_PBX);
    await writeFile(path.join(local, 'extensions/staff.yaml'), extensionsYaml(['1001']));
    daemon = DaemonProcess.start(await daemonSettings(host, { url: local }));
    await daemon.finished(1);
    await writeFile(path.join(local, 'extensions/staff.yaml'), extensionsYaml(['1001', '1008']));
    await daemon.waitFor(() => host.asterisk.liveEndpoints().includes('1008'), 'the local edit applied');
    assert.ok(daemon.events('reconcile.finished').length >= 2);
    assert.ok(daemon.events('reconcile.finished').every((l) => !('fetch' in (l.stages as object))), 'nothing is fetched from a local path');
  });

  it('pbx-agent sync waits for the daemon\'s run in progress instead of overlapping it', async () => {
    const d = await startDaemon();
    host.asterisk.hangReloads('res_pjsip');
    const seen = host.asterisk.actionsReceived().length;
    await pushAndNotify(['1001', '1010']);
    while (!host.asterisk.actionsReceived().slice(seen).some((a) => a.action.toLowerCase() === 'reload')) await new Promise((r) => setTimeout(r, 10));
    const settings = await daemonSettings(host, { url: remote.url, webhookPort: port });
    const sync = cliProcess(['sync', '--settings', settings]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sync.done, false, 'sync is waiting for the lock');
    host.asterisk.hangReloads(null);
    const result = await sync.result;
    assert.equal(result.code, 0, result.err);
    assert.match(result.out, /^unchanged: revision [0-9a-f]{12}$/m, 'it ran after the daemon had applied the commit');
    const finished = await d.finished(2);
    assert.equal(finished.status, 'applied');
  });

  it('pbx-agent status says healthy with the applied revision while the daemon runs, and notes when it is not running', async () => {
    const d = await startDaemon();
    const settings = await daemonSettings(host, { url: remote.url, webhookPort: port });
    const running = await cliProcess(['status', '--settings', settings]).result;
    assert.equal(running.code, 0, running.out + running.err);
    assert.match(running.out, /^pbx-agent: healthy$/m);
    assert.match(running.out, new RegExp(`^  daemon: {4}running \\(pid ${d.child.pid}\\)$`, 'm'));
    assert.match(running.out, /^ {2}applied: {3}revision [0-9a-f]{12} at /m);
    await d.stop();
    const stopped = await cliProcess(['status', '--settings', settings, '--json']).result;
    const json = JSON.parse(stopped.out);
    assert.equal(json.healthy, true);
    assert.equal(json.daemonPid, null);
    assert.deepEqual(json.notes, ['the daemon is not running (no live pid in the state directory)']);
  });

  it('tells systemd it is ready after the first reconcile (Type=notify)', async () => {
    const bin = await tempDir('pbx-agent-bin-');
    const record = path.join(bin, 'notified');
    await writeFile(path.join(bin, 'systemd-notify'), `#!/bin/sh\necho "$@" >> ${record}\n`);
    await chmod(path.join(bin, 'systemd-notify'), 0o755);
    const settings = await daemonSettings(host, { url: remote.url });
    const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', 'run', '--settings', settings], {
      stdio: 'ignore',
      env: { ...process.env, NOTIFY_SOCKET: '/run/systemd/notify-test', PATH: `${bin}:${process.env.PATH}` },
    });
    try {
      const deadline = Date.now() + 20_000;
      let text = '';
      while (!text && Date.now() < deadline) {
        text = await readFile(record, 'utf8').catch(() => '');
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.match(text, new RegExp(`^--ready --pid=${child.pid} --status=first reconcile attempted$`, 'm'));
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001']);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
