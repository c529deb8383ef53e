/**
 * `pbx-agent plan` and `pbx-agent apply` as real child processes against a loopback Asterisk,
 * including a crash (SIGKILL) between writing the files and reloading them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { StateStore } from '../agent/record/state.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const repo = (numbers: string[]) => makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(numbers) });

/** Runs the CLI as a child process without blocking this process, which serves the fake AMI. */
async function cli(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  const logs = err.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  return { code, out, err, logs };
}

describe('plan and apply commands', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);

  it('plan shows diffs, extension changes and reloads, and changes nothing', async () => {
    const dir = await repo(['1001', '1002']);
    const r = await cli(['plan', dir, '--settings', host.settingsFile, '--revision', 'r1']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^ {2}create {4}pbx-agent\/pjsip\.conf {7}res_pjsip$/m);
    assert.match(r.out, /^\+\[1001\]$/m);
    assert.match(r.out, /^Extensions: added 1001 1002; changed -; removed -$/m);
    assert.match(r.out, /^Asterisk would reload: res_rtp_asterisk, res_pjsip, app_voicemail, app_confbridge, pbx_config$/m);
    assert.equal(await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8').catch(() => 'absent'), 'absent');
    assert.equal(host.asterisk.reloadCount(), 0);
  });

  it('apply applies and verifies, then reports unchanged, with JSON log lines on stderr', async () => {
    const dir = await repo(['1001', '1002']);
    const first = await cli(['apply', dir, '--settings', host.settingsFile, '--revision', 'r1']);
    assert.equal(first.code, 0, first.err);
    assert.equal(first.out, 'applied: revision r1, reloaded res_rtp_asterisk, res_pjsip, app_voicemail, app_confbridge, pbx_config\n');
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
    const finished = first.logs.find((l) => l.event === 'reconcile.finished');
    assert.equal(finished.status, 'applied');
    assert.equal(finished.verification.ok, true);
    const second = await cli(['apply', dir, '--settings', host.settingsFile, '--revision', 'r2']);
    assert.equal(second.out, 'unchanged: revision r2\n');
  });

  it('plan prints what a change would do to the phones as WARNING lines, and apply logs each as plan.warning', async () => {
    const dir = await repo(['1001', '1002']);
    assert.equal((await cli(['apply', dir, '--settings', host.settingsFile])).code, 0);
    await writeFile(path.join(dir, 'pbx.yaml'), BASE_PBX.replace('udp: { port: 5060 }', 'udp: { port: 5080 }'));
    const plan = await cli(['plan', dir, '--settings', host.settingsFile]);
    assert.equal(plan.code, 0, plan.err);
    assert.match(plan.out, /^WARNING: transport-udp moves from port 5060 to 5080: every phone must be set to the new port/m);
    const apply = await cli(['apply', dir, '--settings', host.settingsFile]);
    assert.match(apply.out, /^WARNING: transport-udp moves from port 5060 to 5080/m);
    const logged = apply.logs.find((l) => l.event === 'plan.warning');
    assert.equal(logged?.level, 'warn');
    assert.equal(logged?.kind, 'transport_port');
  });

  it('apply with a wrong AMI password fails fast with ami.auth_failed and exit 3', async () => {
    const secretFile = path.join(path.dirname(host.settingsFile), 'ami.secret');
    await writeFile(secretFile, 'wrong-password\n');
    const r = await cli(['apply', await repo(['1001']), '--settings', host.settingsFile]);
    assert.equal(r.code, 3);
    assert.match(r.err, /^apply: .*Authentication failed.*; check the \[pbx-agent\] user in manager\.conf and .*ami\.secret$/m);
    assert.ok(r.logs.some((l) => l.event === 'ami.auth_failed' && l.level === 'error'));
    assert.ok(!r.err.includes('wrong-password'), 'the secret is never printed');
  });

  it('warns when manager.conf lets AMI listen beyond loopback', async () => {
    const conf = path.join(host.configDir, 'manager.conf');
    await writeFile(conf, (await readFile(conf, 'utf8')).replace('bindaddr = 127.0.0.1', 'bindaddr = 0.0.0.0'));
    const r = await cli(['apply', await repo(['1001']), '--settings', host.settingsFile]);
    assert.equal(r.code, 0, r.err);
    const warning = r.logs.find((l) => l.event === 'ami.exposed');
    assert.equal(warning?.level, 'warn');
    assert.equal(warning?.bindaddr, '0.0.0.0');
  });

  it('finishes a change after the agent was killed between writing the files and reloading them', async () => {
    const dir1 = await repo(['1001', '1002']);
    assert.equal((await cli(['apply', dir1, '--settings', host.settingsFile, '--revision', 'r1'])).code, 0);

    // The reload of res_pjsip never answers, so the child is stuck right after writing.
    host.asterisk.hangReloads('res_pjsip');
    const seen = host.asterisk.actionsReceived().length;
    const dir2 = await repo(['1001', '1002', '1003']);
    const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', 'apply', dir2, '--settings', host.settingsFile, '--revision', 'r2'], { stdio: 'ignore' });
    const state = new StateStore(host.stateDir);
    // A child started through tsx takes seconds on a busy machine: wait generously.
    await waitFor(() =>
      host.asterisk.actionsReceived().slice(seen).some((a) => a.action.toLowerCase() === 'reload' && a.headers.some(([, v]) => /res_pjsip/.test(v))),
    60_000);
    assert.equal((await state.read()).pending?.revision, 'r2', 'the change is marked pending before it is reloaded');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.match(await readFile(path.join(host.configDir, 'pbx-agent/pjsip.conf'), 'utf8'), /^\[1003\]$/m, 'the new file was written');

    host.asterisk.hangReloads(null);
    const r = await cli(['apply', dir2, '--settings', host.settingsFile, '--revision', 'r2']);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.logs.some((l) => l.event === 'reconcile.resumed'));
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
    const after = await state.read();
    assert.equal(after.pending, undefined);
    assert.equal(after.applied?.revision, 'r2');
  }).timeout(180_000); // four CLI processes through tsx: slow on a busy machine, and not what is measured
});

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}
