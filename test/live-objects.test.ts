/**
 * Live objects end to end against the loopback Asterisk: the reconcile sends a few extensions as
 * astdb/ARI objects instead of reloading res_pjsip, verifies them, falls back to a reload when
 * Asterisk refuses one, and the fold makes pjsip.conf hold them again.
 */
import assert from 'node:assert/strict';
import { reconcile, type ReconcileOutcome } from '../agent/reconcile.js';
import { StateStore } from '../agent/record/state.js';
import { foldLiveObjects } from '../agent/reload/fold.js';
import { LIVE_OBJECTS_FAMILY } from '../agent/asterisk/live-objects.js';
import { AgentSettings } from '../schemas/agent-settings.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const repo = (exts: Array<string | { number: string; extra?: string }>) => makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(exts) });

describe('live objects: a few extensions without a res_pjsip reload', () => {
  let host: PbxHost;
  afterEach(async () => {
    await host?.stop();
  });
  after(removeTempRepos);

  const run = (dir: string, revision: string, options = {}): Promise<ReconcileOutcome> => reconcile(host.deps(options), { dir, revision });
  const events = (name: string) => host.events.filter((e) => e.event === name);
  const liveKeys = () => host.asterisk.astdbEntries().map(([k]) => k).filter((k) => k.startsWith(`/${LIVE_OBJECTS_FAMILY}/`));
  const state = () => new StateStore(host.stateDir).read();

  it('adds an extension as live objects: no res_pjsip reload, the endpoint is live and verified, the state records it', async () => {
    host = await startPbxHost({ liveObjects: {} });
    assert.equal((await run(await repo(['1001', '1002']), 'r1')).status, 'applied');
    const reloadsBefore = host.asterisk.reloadCount('res_pjsip');

    const out = await run(await repo(['1001', '1002', '1003']), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.equal(host.asterisk.reloadCount('res_pjsip'), reloadsBefore, 'res_pjsip was reloaded');
    assert.ok(!out.reloads.includes('res_pjsip'));
    assert.equal(out.liveObjectEdits, 4);
    assert.equal(out.verification?.ok, true);
    assert.ok(host.asterisk.liveEndpoints().includes('1003'));
    assert.deepEqual(liveKeys(), ['/pbx-agent-live/auth/1003', '/pbx-agent-live/aor/1003', '/pbx-agent-live/endpoint/1003'].sort());
    // The aor and the endpoint went through ARI (observers), the auth through AMI.
    const ari = host.asterisk.ariRequests().filter((r) => r.method === 'PUT').map((r) => r.path.replace(/^.*\/res_pjsip\//, ''));
    assert.deepEqual(ari, ['aor/1003', 'endpoint/1003']);
    assert.deepEqual((await state()).live?.added, ['1003']);
    assert.equal(events('reconcile.finished').at(-1)!.liveObjectEdits, 4);
  });

  it('changes an extension with DBPut: the new max_contacts is live at once, a registered phone stays registered', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001', '1002']), 'r1');
    host.asterisk.registerContact('1002', 'sip:1002@198.51.100.20:5060');
    const reloadsBefore = host.asterisk.reloadCount('res_pjsip');

    const out = await run(await repo(['1001', { number: '1002', extra: 'max_contacts: 5' }]), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.equal(host.asterisk.reloadCount('res_pjsip'), reloadsBefore);
    assert.equal(host.asterisk.liveState().aors['1002']!.max_contacts, '5');
    assert.equal(host.asterisk.liveState().contacts['1002']?.length, 1);
    assert.deepEqual((await state()).live?.changed, ['1002']);
    assert.deepEqual(host.asterisk.ariRequests().filter((r) => r.method !== 'GET'), [], 'a change writes nothing through ARI (the GET is the probe)');
  });

  it('locks out a removed extension at once and drops it at the fold: reload first, astdb emptied after', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001', '1002']), 'r1');
    const out = await run(await repo(['1001']), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.equal(out.verification?.ok, true);
    assert.ok(!out.reloads.includes('res_pjsip'));
    // Still listed until the fold, but its auth takes no password.
    assert.ok(host.asterisk.liveEndpoints().includes('1002'));
    const lockedAuth = JSON.parse(host.asterisk.astdbGet(`${LIVE_OBJECTS_FAMILY}/auth`, '1002')!) as Record<string, string>;
    assert.match(lockedAuth.md5_cred!, /^[0-9a-f]{32}$/);
    assert.notEqual(lockedAuth.md5_cred, host.asterisk.liveState().auths['1001']!.md5_cred);
    assert.deepEqual((await state()).live?.removed, ['1002']);

    const reloadsBefore = host.asterisk.reloadCount('res_pjsip');
    assert.equal(await foldLiveObjects(host.deps()), 'folded');
    assert.equal(host.asterisk.reloadCount('res_pjsip'), reloadsBefore + 1);
    assert.deepEqual(liveKeys(), []);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001']);
    assert.equal((await state()).live, undefined);
    assert.equal(events('live.folded').length, 1);
    // The reload came before the family was dropped: no moment without the objects.
    const actions = host.asterisk.actionsReceived().map((a) => a.action.toLowerCase());
    assert.ok(actions.lastIndexOf('reload') < actions.lastIndexOf('dbdeltree'));
  });

  it('deletes an extension created live through ARI, and then has nothing left to fold', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001']), 'r1');
    await run(await repo(['1001', '1002']), 'r2');
    const out = await run(await repo(['1001']), 'r3');
    assert.equal(out.status, 'applied', out.error);
    const deletes = host.asterisk.ariRequests().filter((r) => r.method === 'DELETE').map((r) => r.path.replace(/^.*\/res_pjsip\//, ''));
    assert.deepEqual(deletes, ['aor/1002', 'endpoint/1002', 'auth/1002']);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001']);
    assert.deepEqual(liveKeys(), []);
    assert.equal((await state()).live, undefined);
    assert.equal(await foldLiveObjects(host.deps()), 'nothing');
  });

  it('reloads res_pjsip instead when ARI refuses an object, drops the live objects, and still applies', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001']), 'r1');
    host.asterisk.failNextAri('PUT', 500, 'Internal Server Error');
    const out = await run(await repo(['1001', '1002']), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.ok(out.reloads.includes('res_pjsip'));
    assert.equal(out.liveObjectEdits, 0);
    assert.equal(events('live.fell_back').length, 1);
    assert.deepEqual(liveKeys(), [], 'the reload dropped what was written before the refusal');
    assert.ok(host.asterisk.liveEndpoints().includes('1002'));
    assert.equal((await state()).live, undefined);
  });

  it('reloads when Asterisk lacks the sorcery.conf mapping, and says so once per connection', async () => {
    host = await startPbxHost({ liveObjects: { mapping: false } });
    await run(await repo(['1001']), 'r1');
    const first = await run(await repo(['1001', '1002']), 'r2');
    const second = await run(await repo(['1001', '1002', '1003']), 'r3');
    assert.equal(first.status, 'applied', first.error);
    assert.equal(second.status, 'applied', second.error);
    assert.ok(first.reloads.includes('res_pjsip') && second.reloads.includes('res_pjsip'));
    assert.equal(events('live.unavailable').length, 1);
    assert.deepEqual(liveKeys(), [], 'the probe left nothing behind');
  });

  it('drops live objects the state file does not know of at every res_pjsip reload, so a good change is not blamed for them', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001', '1002']), 'r1');
    await run(await repo(['1001', { number: '1002', extra: 'max_contacts: 5' }]), 'r2');
    // The record is lost (a state directory restored from a backup), the object is not.
    const store = new StateStore(host.stateDir);
    const { live: _lost, ...rest } = await store.read();
    await store.write(rest);
    const out = await run(await repo(['1001', { number: '1002', extra: 'max_contacts: 7' }, '1003', '1004']), 'r3', { liveObjectsLimit: 2 });
    assert.equal(out.status, 'applied', out.error);
    assert.equal(host.asterisk.liveState().aors['1002']!.max_contacts, '7');
    assert.deepEqual(liveKeys(), []);
  });

  it('folds only once the last live write is fold_after_seconds old, and says how long is left', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001']), 'r1');
    await run(await repo(['1001', '1002']), 'r2');
    const early = await foldLiveObjects(host.deps(), 60_000);
    assert.ok(typeof early === 'object' && early.notYet > 55_000 && early.notYet <= 60_000, JSON.stringify(early));
    assert.equal(liveKeys().length, 3, 'nothing was folded');
    const later = host.deps();
    later.now = () => new Date(Date.now() + 61_000);
    assert.equal(await foldLiveObjects(later, 60_000), 'folded');
    assert.deepEqual(liveKeys(), []);
  });

  it('refuses an ARI URL that would carry the password off this host or in the open', () => {
    const settings = (url: string) => AgentSettings.safeParse({ asterisk: { live_objects: { enabled: true, ari_url: url } } }).success;
    assert.equal(settings('http://127.0.0.1:8088'), true);
    assert.equal(settings('http://[::1]:8088'), true);
    assert.equal(settings('http://10.0.0.5:8088'), false);
    assert.equal(settings('https://127.0.0.1:8089'), false);
  });

  it('reloads when ARI refuses the agent\'s password, and says so once instead of failing every change', async () => {
    host = await startPbxHost({ liveObjects: {} });
    const deps = host.deps();
    const { AriClient } = await import('../agent/asterisk/ari.js');
    const { amiAriLiveObjects } = await import('../agent/asterisk/live-objects.js');
    const wrong = amiAriLiveObjects(host.client, new AriClient({ url: host.asterisk.ariUrl, username: 'pbx-agent', password: 'not-the-password', timeoutMs: 2000 }));
    deps.asterisk = { ...deps.asterisk, liveObjects: wrong };
    try {
      await reconcile(deps, { dir: await repo(['1001']), revision: 'r1' });
      const out = await reconcile(deps, { dir: await repo(['1001', '1002']), revision: 'r2' });
      assert.equal(out.status, 'applied', out.error);
      assert.ok(out.reloads.includes('res_pjsip'));
      assert.equal(events('live.fell_back').length, 0);
      const unavailable = events('live.unavailable');
      assert.equal(unavailable.length, 1);
      assert.match(String(unavailable[0]!.msg), /ARI does not answer \(ARI GET res_pjsip\/aor\/pbx-agent-probe: 401/);
      assert.doesNotMatch(JSON.stringify(host.events), /not-the-password/);
    } finally {
      wrong.close();
    }
  });

  it('drops the live objects whenever res_pjsip reloads for a larger change, so none hides the newer file', async () => {
    host = await startPbxHost({ liveObjects: {} });
    await run(await repo(['1001', '1002']), 'r1');
    await run(await repo(['1001', { number: '1002', extra: 'max_contacts: 5' }]), 'r2');
    assert.equal(liveKeys().length, 1);
    // More than max_extensions change: a reload, after which astdb holds nothing of ours.
    const out = await run(await repo(['1001', { number: '1002', extra: 'max_contacts: 7' }, '1003', '1004']), 'r3', { liveObjectsLimit: 2 });
    assert.equal(out.status, 'applied', out.error);
    assert.ok(out.reloads.includes('res_pjsip'));
    assert.deepEqual(liveKeys(), []);
    assert.equal(host.asterisk.liveState().aors['1002']!.max_contacts, '7');
    assert.equal((await state()).live, undefined);
  });
});
