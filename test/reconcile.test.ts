/**
 * The whole reconcile against a loopback Asterisk (FakeAsterisk) through the real AMI adapter:
 * add/change/remove, no-op, a change Asterisk rejects, hung reloads, lost connections.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { reconcile, scaledReloadTimeout, type ReconcileOutcome } from '../agent/reconcile.js';
import { StateStore } from '../agent/record/state.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

async function repo(exts: Array<{ number: string; extra?: string }>, pbx = BASE_PBX): Promise<string> {
  return makeRepo({ 'pbx.yaml': pbx, 'extensions/staff.yaml': extensionsYaml(exts) });
}
const TWO = [{ number: '1001' }, { number: '1002' }];

describe('reconcile against a loopback Asterisk', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);

  const run = async (dir: string, revision: string, options = {}): Promise<ReconcileOutcome> =>
    reconcile(host.deps(options), { dir, revision });
  const events = (name: string) => host.events.filter((e) => e.event === name);

  it('applies a new config, reloads each changed module once, and proves it live', async () => {
    const out = await run(await repo(TWO), 'r1');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
    assert.deepEqual(out.reloads, ['res_rtp_asterisk', 'res_pjsip', 'app_voicemail', 'app_confbridge', 'pbx_config']);
    for (const m of out.reloads) assert.equal(host.asterisk.reloadCount(m), 1, m);
    assert.equal(out.verification?.ok, true);
    const state = await new StateStore(host.stateDir).read();
    assert.equal(state.applied?.revision, 'r1');
    assert.equal(state.pending, undefined);
    const finished = events('reconcile.finished');
    assert.equal(finished.length, 1);
    assert.equal(finished[0]!.status, 'applied');
    assert.deepEqual(Object.keys(finished[0]!.stages as object), ['render', 'plan', 'save', 'preflight', 'apply', 'reload', 'verify', 'record']);
  });

  it('reports the git fetch as the first stage, and never as where a run failed', async () => {
    const dir = await repo(TWO);
    const out = await reconcile(host.deps(), { dir, revision: 'r1', sourceMs: { fetch: 12.34, checkout: 2.06 } });
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(Object.keys(events('reconcile.finished')[0]!.stages as object), ['fetch', 'checkout', 'render', 'plan', 'save', 'preflight', 'apply', 'reload', 'verify', 'record']);
    assert.equal((events('reconcile.finished')[0]!.stages as Record<string, number>).fetch, 12.3);
    assert.equal((events('reconcile.finished')[0]!.stages as Record<string, number>).checkout, 2.1);

    // A failure before the first stage of the run: the disk refuses the clean-up of temp files.
    const deps = host.deps();
    const files = deps.files;
    deps.files = new Proxy(files, {
      get(target, key) {
        if (key === 'removeLeftovers') return async () => Promise.reject(new Error('EIO: the disk went away'));
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const failed = await reconcile(deps, { dir, revision: 'r2', sourceMs: { fetch: 5, checkout: 1 } });
    assert.equal(failed.status, 'failed');
    const line = events('reconcile.failed')[0]!;
    assert.equal(line.stage, undefined, 'the fetch had finished; no stage of the run had started');
    assert.deepEqual(Object.keys(events('reconcile.finished')[1]!.stages as object), ['fetch', 'checkout', 'record']);
  });

  it('does nothing at all when nothing changed: no write, no reload, no AMI traffic beyond none', async () => {
    const dir = await repo(TWO);
    await run(dir, 'r1');
    const pjsip = path.join(host.configDir, 'pbx-agent/pjsip.conf');
    const before = await stat(pjsip);
    const reloads = host.asterisk.reloadCount();
    const actions = host.asterisk.actionsReceived().length;
    const out = await run(dir, 'r2');
    assert.equal(out.status, 'unchanged');
    assert.deepEqual(out.changedFiles, []);
    assert.equal(host.asterisk.reloadCount(), reloads);
    assert.equal(host.asterisk.actionsReceived().length, actions, 'not a single AMI action');
    assert.equal((await stat(pjsip)).mtimeMs, before.mtimeMs);
  });

  it('adds an extension: only res_pjsip reloads, the dialplan gains it live, and the new endpoint is live', async () => {
    await run(await repo(TWO), 'r1');
    const out = await run(await repo([...TWO, { number: '1003' }]), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(out.reloads, ['res_pjsip']);
    assert.equal(out.dialplanEdits, 3, 'priority 1, priority 2 and the hint');
    assert.equal(host.asterisk.reloadCount('pbx_config'), 1, 'extensions.conf was not re-read');
    assert.deepEqual(out.extensions, { added: ['1003'], changed: [], removed: [] });
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
    assert.equal(host.asterisk.reloadCount('res_rtp_asterisk'), 1, 'rtp.conf did not change');
  });

  it('changes an extension and reads the new values back from Asterisk', async () => {
    await run(await repo(TWO), 'r1');
    const out = await run(await repo([{ number: '1001', extra: 'max_contacts: 5, codec_profile: video' }, { number: '1002' }]), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(out.extensions.changed, ['1001']);
    assert.equal(out.verification?.checked.endpointDetails, 1, 'only the changed endpoint is read back in detail');
    const live = host.asterisk.liveState();
    assert.equal(live.aors['1001']?.max_contacts, '5');
  });

  it('removes an extension from Asterisk and from the dialplan', async () => {
    await run(await repo([...TWO, { number: '1003' }]), 'r1');
    const out = await run(await repo(TWO), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(out.extensions.removed, ['1003']);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
  });

  it('rolls back a change Asterisk silently rejects, and does not retry it until the config changes', async () => {
    // This Asterisk build does not know voicemail_extension: res_pjsip logs an error and keeps the
    // OLD endpoint, and the Reload still answers Success (reference e_1_unknown_option_existing_endpoint).
    await host.stop();
    host = await startPbxHost({ unknownOptions: ['voicemail_extension'] });
    await run(await repo(TWO), 'r1');
    const pjsipBefore = await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8');

    const bad = await repo([{ number: '1001' }, { number: '1002', extra: 'voicemail: true, max_contacts: 2' }]);
    const out = await run(bad, 'r2');
    assert.equal(out.status, 'rolled_back');
    assert.equal(
      out.error,
      'endpoint 1002 Mailboxes: expected 1002@pbx-agent, Asterisk has (empty); ' +
        'endpoint 1002 MwiSubscribeReplacesUnsolicited: expected yes, Asterisk has no; ' +
        'endpoint 1002 VoicemailExtension: expected *97, Asterisk has (empty)',
    );
    assert.equal(await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8'), pjsipBefore, 'last-known-good restored');
    assert.equal(host.asterisk.liveState().aors['1002']?.max_contacts, '3', 'the old aor is live again');
    const rolled = events('reconcile.rolled_back');
    assert.equal(rolled.length, 1);
    assert.deepEqual(rolled[0]!.objects, ['endpoint 1002']);
    const state = await new StateStore(host.stateDir).read();
    assert.equal(state.failed?.revision, 'r2');
    assert.equal(state.pending, undefined);

    const reloads = host.asterisk.reloadCount();
    const again = await run(bad, 'r2');
    assert.equal(again.status, 'skipped');
    assert.equal(host.asterisk.reloadCount(), reloads, 'a known-bad config is not reloaded again');

    const fixed = await run(await repo([{ number: '1001' }, { number: '1002', extra: 'max_contacts: 2' }]), 'r3');
    assert.equal(fixed.status, 'applied', fixed.error);
    assert.equal(host.asterisk.liveState().aors['1002']?.max_contacts, '2');
    assert.equal((await new StateStore(host.stateDir).read()).failed, undefined);
  });

  it('refuses, before writing anything, an extension that collides with a hand-written endpoint', async () => {
    await host.stop();
    host = await startPbxHost({ operatorPjsip: '[1003]\ntype=endpoint\ncontext=internal\n\n#tryinclude pbx-agent/pjsip.conf\n' });
    await run(await repo(TWO), 'r1');
    const pjsipBefore = await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8');
    const reloads = host.asterisk.reloadCount();
    const out = await run(await repo([...TWO, { number: '1003' }]), 'r2');
    assert.equal(out.status, 'invalid');
    assert.deepEqual(out.issues.map((i) => `${i.file}:${i.line}:${i.column}`), ['extensions/staff.yaml:4:5']);
    assert.match(out.issues[0]!.message, /^extension 1003 collides with endpoint 1003 that Asterisk already has from outside pbx-agent/);
    assert.equal(await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8'), pjsipBefore);
    assert.equal(host.asterisk.reloadCount(), reloads);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
  });

  it('reports a hung reload, keeps the change pending, and finishes it on the next run', async () => {
    await run(await repo(TWO), 'r1');
    host.asterisk.hangReloads('res_pjsip');
    const next = await repo([...TWO, { number: '1003' }]);
    const out = await run(next, 'r2', { reloadTimeoutMs: 300 });
    assert.equal(out.status, 'failed');
    assert.match(out.error!, /reload of res_pjsip did not finish within 0.3 s/);
    assert.equal(events('reload.hung').length, 1);
    assert.equal((await new StateStore(host.stateDir).read()).pending?.revision, 'r2');

    host.asterisk.hangReloads(null);
    const resumed = await run(next, 'r2');
    assert.equal(resumed.status, 'applied', resumed.error);
    assert.equal(events('reconcile.resumed').length, 1);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
    assert.equal((await new StateStore(host.stateDir).read()).pending, undefined);
  });

  for (const [answer, why] of [
    ['A reload is in progress', 'another reload holds Asterisk\'s reload lock (transcript t_)'],
    ['Asterisk is shutting down', 'Asterisk is on its way down (transcript u_)'],
  ] as const) {
    it(`keeps the change pending and rolls nothing back when a reload is answered "${answer}": ${why}`, async () => {
      await run(await repo(TWO), 'r1');
      host.asterisk.failNextAction('Reload', answer);
      const next = await repo([...TWO, { number: '1003' }]);
      const out = await run(next, 'r2');
      assert.equal(out.status, 'failed');
      assert.match(out.error!, new RegExp(`put off by Asterisk: .*${answer}.*stays pending`));
      assert.equal(events('reload.busy').length, 1);
      assert.equal(events('verify.mismatch').length, 0, 'not treated as Asterisk rejecting the change');
      assert.equal(events('rollback.failed').length, 0);
      const state = await new StateStore(host.stateDir).read();
      assert.equal(state.pending?.revision, 'r2');
      assert.equal(state.failed, undefined, 'the revision is not barred');

      const resumed = await run(next, 'r2');
      assert.equal(resumed.status, 'applied', resumed.error);
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
      const [event] = events('reconcile.resumed');
      assert.match(String(event!.msg), /left pending by a run that failed/);
      assert.match(String(event!.lastError), new RegExp(answer));
    });
  }

  it('says "interrupted" only for a change the agent left mid-run, not for one a failed run left pending', async () => {
    await run(await repo(TWO), 'r1');
    const state = new StateStore(host.stateDir);
    // What a kill -9 between writing and verifying leaves: pending without lastError.
    const next = await repo([...TWO, { number: '1003' }]);
    host.asterisk.hangReloads('res_pjsip');
    await run(next, 'r2', { reloadTimeoutMs: 200 });
    host.asterisk.hangReloads(null);
    const { lastError: _gone, ...interrupted } = (await state.read()).pending!;
    await state.write({ ...(await state.read()), pending: interrupted });
    await run(next, 'r2');
    const [event] = events('reconcile.resumed');
    assert.match(String(event!.msg), /interrupted before it was verified \(the agent stopped mid-run\)/);
  });

  it('survives Asterisk restarting in the middle of a reload', async () => {
    await run(await repo(TWO), 'r1');
    host.asterisk.hangReloads('res_pjsip');
    const running = run(await repo([...TWO, { number: '1003' }]), 'r2', { reloadTimeoutMs: 3000 });
    await waitFor(() => host.asterisk.actionsReceived().some((a) => a.action.toLowerCase() === 'reload'));
    host.asterisk.hangReloads(null);
    await host.asterisk.restart();
    const out = await running;
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
  });

  it('carries on when Asterisk closes the AMI connection between actions', async () => {
    await run(await repo(TWO), 'r1');
    host.asterisk.closeAfterNextAction();
    const out = await run(await repo([...TWO, { number: '1003' }]), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
  });
});

describe('reconcile: the AMI user\'s rights are checked before anything is written', () => {
  after(removeTempRepos);
  const cases = [
    { rights: { read: ['system'], write: ['system', 'config'] }, missing: /lacks write command \(needed for reading transports/, fix: /write = system,command/ },
    { rights: { read: ['call'], write: ['system', 'config', 'command'] }, missing: /lacks read system \(needed for the FullyBooted and Reload events/, fix: /read = system/ },
  ];
  for (const c of cases) {
    it(`names the missing right (read = ${c.rights.read}, write = ${c.rights.write}) and writes nothing`, async () => {
      const host = await startPbxHost({ amiRights: c.rights });
      try {
        const out = await reconcile(host.deps(), { dir: await repo(TWO), revision: 'r1' });
        assert.equal(out.status, 'failed');
        assert.match(out.error!, c.missing);
        assert.match(out.error!, c.fix);
        assert.match(out.error!, /manager reload/);
        assert.deepEqual(out.changedFiles, []);
        assert.equal(host.asterisk.reloadCount(), 0, 'no reload');
        await assert.rejects(readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf')), /ENOENT/);
        assert.equal(host.events.filter((e) => e.event === 'ami.permission_denied').length, 1);
        assert.equal(host.events.filter((e) => e.event === 'rollback.failed').length, 0);
      } finally {
        await host.stop();
      }
    });
  }

  it('goes ahead with the rights the bootstrap grants (read = system, write = system,config,command)', async () => {
    const host = await startPbxHost();
    try {
      const out = await reconcile(host.deps(), { dir: await repo(TWO), revision: 'r1' });
      assert.equal(out.status, 'applied', out.error);
    } finally {
      await host.stop();
    }
  });
});

describe('reconcile: transport changes that need a restart', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);
  const rebound = () => repo(TWO, BASE_PBX.replace('udp: { port: 5060 }', 'udp: { port: 5080 }'));
  const events = (name: string) => host.events.filter((e) => e.event === name);

  it('applies the rest, reports the restart it needs, and never restarts Asterisk under policy never', async () => {
    await reconcile(host.deps(), { dir: await repo(TWO), revision: 'r1' });
    assert.equal(events('asterisk.restart_required').length, 0, 'a new transport is created by the reload: no restart needed');
    const out = await reconcile(host.deps(), { dir: await rebound(), revision: 'r2' });
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(out.verification?.restartPending, ['transport transport-udp bind is 0.0.0.0:5060, rendered 0.0.0.0:5080']);
    assert.equal(events('asterisk.restart_required').length, 1);
    assert.equal(host.asterisk.restartRequests, 0);
    assert.deepEqual((await new StateStore(host.stateDir).read()).restartPending?.reasons, ['transport transport-udp bind is 0.0.0.0:5060, rendered 0.0.0.0:5080']);

    // The operator restarts Asterisk by hand; the next run sees the new bind live and clears it.
    await host.asterisk.restart();
    const after = await reconcile(host.deps(), { dir: await rebound(), revision: 'r2' });
    assert.equal(after.status, 'unchanged');
    assert.equal((await new StateStore(host.stateDir).read()).restartPending, undefined);
    assert.equal(events('asterisk.restart_required').length, 1, 'reported once, not on every run');
  });

  it('under policy when_idle waits while calls are up, then restarts and confirms the new bind', async () => {
    const options = { restartPolicy: 'when_idle' as const, reloadTimeoutMs: 2000 };
    await reconcile(host.deps(options), { dir: await repo(TWO), revision: 'r1' });
    host.asterisk.activeCallCount = 1;
    const busy = await reconcile(host.deps(options), { dir: await rebound(), revision: 'r2' });
    assert.equal(busy.status, 'applied', busy.error);
    assert.equal(events('asterisk.restart_deferred').length, 1);
    assert.equal(host.asterisk.restartRequests, 0, 'no restart while a call is up');

    host.asterisk.activeCallCount = 0;
    const idle = await reconcile(host.deps(options), { dir: await rebound(), revision: 'r2' });
    assert.equal(idle.status, 'unchanged');
    assert.equal(host.asterisk.restartRequests, 1);
    assert.equal(events('asterisk.restarted').length, 1);
    assert.equal(host.asterisk.liveState().transports['transport-udp']?.bind, '0.0.0.0:5080');
    assert.equal((await new StateStore(host.stateDir).read()).restartPending, undefined);
  });
});

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('reconcile: the reload time limit grows with the PBX', () => {
  it('gives reload_timeout_seconds per 2,000 extensions, at least once: 10,000 extensions wait 150 s before calling a reload hung', () => {
    assert.equal(scaledReloadTimeout(30_000, 0), 30_000);
    assert.equal(scaledReloadTimeout(30_000, 1_000), 30_000);
    assert.equal(scaledReloadTimeout(30_000, 4_000), 60_000);
    assert.equal(scaledReloadTimeout(30_000, 10_000), 150_000);
  });
});
