/**
 * What keeps Asterisk, the files and the state telling one story: one reconcile at a time for
 * every entry point, last-known-good kept through a resumed change, atomic writes and their
 * leftovers, known-answer credentials, and verification and drift that neither lie nor leak.
 */
import assert from 'node:assert/strict';
import { link, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { DirectoryFileStore } from '../agent/apply/files.js';
import { applyCommand } from '../agent/cli/host-commands.js';
import type { Io } from '../agent/cli/output.js';
import { compareManagedFile } from '../agent/drift/files.js';
import { reconcile } from '../agent/reconcile.js';
import { acquireLock, LOCK_FILE } from '../agent/record/lock.js';
import { StateStore } from '../agent/record/state.js';
import { md5Credential } from '../agent/resolve/index.js';
import { describeMismatches, verifyLiveState } from '../agent/verify/index.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const TWO = ['1001', '1002'];

function io() {
  const out: string[] = [];
  const err: string[] = [];
  const sink: Io = { out: (t) => void out.push(t), err: (t) => void err.push(t) };
  return { sink, out: () => out.join('\n'), err: () => err.join('\n') };
}

describe('credentials: known answers', () => {
  it('computes md5_cred as md5("username:realm:password"), the order res_pjsip checks', () => {
    // Worked by hand: printf '1001:asterisk:vT9-kq2Lm-8xZr' | md5sum
    assert.equal(md5Credential('1001', 'asterisk', 'vT9-kq2Lm-8xZr'), 'ff9a96890bf51bab2dc676946a15d9cb');
  });
});

describe('atomic writes', () => {
  after(removeTempRepos);

  it('replaces a file by rename: a reader holding the old file keeps the old bytes whole', async () => {
    const dir = await tempDir();
    const store = new DirectoryFileStore(dir);
    await store.writeAtomic('pbx-agent/pjsip.conf', 'old\n'.repeat(10_000));
    // A hard link stands for a reader that opened the file before the write.
    await link(path.join(dir, 'pbx-agent/pjsip.conf'), path.join(dir, 'reader'));
    const before = (await stat(path.join(dir, 'pbx-agent/pjsip.conf'))).ino;
    await store.writeAtomic('pbx-agent/pjsip.conf', 'new\n');
    assert.notEqual((await stat(path.join(dir, 'pbx-agent/pjsip.conf'))).ino, before, 'a new inode: written beside, then renamed over');
    assert.equal(await readFile(path.join(dir, 'reader'), 'utf8'), 'old\n'.repeat(10_000));
    assert.equal(await readFile(path.join(dir, 'pbx-agent/pjsip.conf'), 'utf8'), 'new\n');
    assert.deepEqual((await readdir(path.join(dir, 'pbx-agent'))).sort(), ['pjsip.conf'], 'no temp file left');
  });
});

describe('one reconcile at a time, and what a killed run leaves', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);

  it('pbx-agent apply waits for a reconcile in progress (the lock), says so, and writes nothing until it ends', async () => {
    const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(TWO) });
    await mkdir(host.stateDir, { recursive: true });
    const release = await acquireLock(path.join(host.stateDir, LOCK_FILE), 0);
    const o = io();
    const applying = applyCommand({ dir, settingsFile: host.settingsFile, json: false }, o.sink);
    while (!o.err().includes('waiting')) await new Promise((r) => setTimeout(r, 20));
    assert.match(o.err(), new RegExp(`^apply: waiting for the reconcile in progress \\(pid ${process.pid}\\) to finish$`));
    await assert.rejects(readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf')), /ENOENT/, 'nothing written while the lock is held');
    assert.equal(host.asterisk.reloadCount(), 0);
    await release();
    assert.equal(await applying, 0, o.out() + o.err());
    assert.match(o.out(), /^applied: revision \S+, reloaded res_rtp_asterisk, res_pjsip, app_voicemail, app_confbridge, pbx_config$/m);
  });

  it('removes the temp files a killed write left (they hold credentials) before the next run', async () => {
    const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(TWO) });
    await reconcile(host.deps(), { dir, revision: 'r1' });
    const leftover = path.join(host.configDir, 'pbx-agent/.pjsip.conf.0123456789ab.tmp');
    await writeFile(leftover, 'md5_cred=00010001000100010001000100010001\n');
    const lkgLeftover = path.join(host.stateDir, 'last-known-good/pbx-agent/.pjsip.conf.ba9876543210.tmp');
    await writeFile(lkgLeftover, 'md5_cred=00010001000100010001000100010001\n').catch(async () => undefined);
    const out = await reconcile(host.deps(), { dir, revision: 'r1' });
    assert.equal(out.status, 'unchanged');
    await assert.rejects(stat(leftover), /ENOENT/);
    const removed = host.events.filter((e) => e.event === 'apply.leftovers_removed');
    assert.equal(removed.length, 1);
    assert.ok((removed[0]!.files as string[]).includes('.pjsip.conf.0123456789ab.tmp'));
  });

  it('resuming a pending change keeps last-known-good as it was, so a later rejection still rolls back to it', async () => {
    const r1 = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(TWO) });
    await reconcile(host.deps(), { dir: r1, revision: 'r1' });
    const goodPjsip = await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8');
    const state = new StateStore(host.stateDir);

    host.asterisk.hangReloads('res_pjsip');
    const r2 = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml([...TWO, '1003']) });
    assert.equal((await reconcile(host.deps({ reloadTimeoutMs: 200 }), { dir: r2, revision: 'r2' })).status, 'failed');
    // The resumed run fails the same way: it must not take the unverified files for good ones.
    assert.equal((await reconcile(host.deps({ reloadTimeoutMs: 200 }), { dir: r2, revision: 'r2' })).status, 'failed');
    assert.equal((await state.loadLastKnownGood()).get('pbx-agent/pjsip.conf'), goodPjsip);
  });
});

describe('verification and drift say what differs without leaking credentials', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);

  async function applied(): Promise<string> {
    const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(TWO) });
    assert.equal((await reconcile(host.deps(), { dir, revision: 'r1' })).status, 'applied');
    return (await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8')).split('\n\n').slice(1).join('\n\n');
  }

  it('an external address Asterisk does not carry is a mismatch (it applies on reload), not a restart to wait for', async () => {
    const body = await applied();
    const want = body.replace(/^external_media_address=.*$/m, 'external_media_address=198.51.100.77');
    const result = await verifyLiveState(host.deps().asterisk, [{ module: 'res_pjsip', before: body, after: want }], { detailLimit: 10 });
    assert.equal(result.ok, false);
    assert.ok(result.mismatches.some((m) => m.field === 'external_media_address' && m.expected === '198.51.100.77'), describeMismatches(result.mismatches));
    assert.deepEqual(result.restartPending, []);
  });

  it('a credential Asterisk does not have is named as such, and neither digest reaches the message', async () => {
    const body = await applied();
    const live = /^md5_cred=(.*)$/m.exec(body)![1]!;
    const rendered = 'ffffffffffffffffffffffffffffffff';
    const want = body.replace(`md5_cred=${live}`, `md5_cred=${rendered}`);
    const result = await verifyLiveState(host.deps().asterisk, [{ module: 'res_pjsip', before: body, after: want }], { detailLimit: 10 });
    const text = describeMismatches(result.mismatches) + JSON.stringify(result.mismatches);
    assert.match(text, /Md5Cred/);
    assert.doesNotMatch(text, new RegExp(`${live}|${rendered}`));
  });

  it('a hand edit of the md5_cred line shows in the drift diff with both digests redacted', () => {
    const a = 'x'.repeat(32).replace(/x/g, 'a');
    const b = 'b'.repeat(32);
    const expected = `[1001]\ntype=auth\nauth_type=md5\nusername=1001\nrealm=asterisk\nmd5_cred=${a}\n`;
    const drift = compareManagedFile('pbx-agent/pjsip.conf', expected, expected.replace(a, b))!;
    assert.match(drift.diff, /^-md5_cred=/m);
    assert.match(drift.diff, /^\+md5_cred=/m);
    assert.doesNotMatch(drift.diff, new RegExp(`${a}|${b}`));
  });
});
