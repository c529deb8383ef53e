/**
 * The daemon with the cloud checks: loopback IMDS and EC2 endpoints, the real SDK in the worker.
 * external_address: auto follows the Elastic IP, also when it changes while the daemon runs.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { statusCommand } from '../agent/cli/daemon-commands.js';
import type { Io } from '../agent/cli/output.js';
import { readDrifts } from '../agent/drift/recorder.js';
import { StateStore } from '../agent/record/state.js';
import { BASE_PBX, removeTempRepos } from './support/config-repo.js';
import { daemonSettings, DaemonProcess } from './support/daemon-process.js';
import { FakeEc2, loopbackAwsEnv, referenceWorld } from './support/ec2-server.js';
import { GitRemote } from './support/git-remote.js';
import { FakeImds } from './support/imds-server.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const FIRST_EIP = '203.0.113.10';
const NEW_EIP = '198.51.100.20';

describe('daemon with cloud checks (loopback IMDS and EC2)', function () {
  this.timeout(60_000);
  let host: PbxHost;
  let remote: GitRemote;
  let imds: FakeImds;
  let ec2: FakeEc2;
  let daemon: DaemonProcess | undefined;

  beforeEach(async () => {
    host = await startPbxHost();
    imds = new FakeImds();
    ec2 = new FakeEc2(referenceWorld(FIRST_EIP));
    await imds.start();
    await ec2.start();
    remote = await GitRemote.create();
    await remote.commit({
      'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', 'external_address: auto'),
      'extensions/staff.yaml': `extensions:\n  - { number: "1001", md5: ${'a'.repeat(32)} }\n`,
    });
    await remote.push();
    await remote.serve();
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await remote.stopServing();
    await imds.stop();
    await ec2.stop();
    await host.stop();
  });
  after(removeTempRepos);

  it('renders external_address: auto as the Elastic IP, and follows it when it changes while running', async () => {
    const settings = await daemonSettings(host, { url: remote.url, cloudSchedule: '* * * * * *', cloud: { imds: imds.url, ec2: ec2.url } });
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    const first = await daemon.finished(1, 'the startup reconcile');
    assert.equal(first.status, 'applied', String(first.error));
    const pjsip = path.join(host.configDir, 'pbx-agent/pjsip.conf');
    assert.match(await readFile(pjsip, 'utf8'), new RegExp(`^external_media_address=${FIRST_EIP}$`, 'm'));

    // The Elastic IP is moved: a new address is associated with the instance.
    imds.instance = { ...imds.instance, publicIpv4: NEW_EIP };
    ec2.world = referenceWorld(NEW_EIP);
    await daemon.waitFor(() => host.asterisk.liveState().transports['transport-udp']?.external_media_address === NEW_EIP, 'Asterisk advertising the new Elastic IP');
    assert.match(await readFile(pjsip, 'utf8'), new RegExp(`^external_signaling_address=${NEW_EIP}$`, 'm'));
    assert.ok(daemon.events('drift.eip').length >= 1, 'the change was reported as drift.eip');
  });

  it('checks the cloud side again after a run that changes what it compares (the RTP ports), not after one that adds an extension', async () => {
    const settings = await daemonSettings(host, { url: remote.url, cloud: { imds: imds.url, ec2: ec2.url } });
    const checks = () => ec2.requests.filter((r) => r.action === 'DescribeAddresses').length;
    // A first run, so that the state holds an applied configuration when each daemon below starts.
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    assert.equal((await daemon.finished(1)).status, 'applied');
    await daemon.stop();
    /** EC2 address lookups of one daemon: its check at start, one push, a no-op run, and the checks they set off. */
    const lookupsAround = async (files: Record<string, string>) => {
      const before = checks();
      daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
      assert.equal((await daemon.finished(1)).status, 'unchanged');
      await remote.commit(files);
      await remote.push();
      daemon.signal('SIGHUP');
      assert.equal((await daemon.finished(2)).status, 'applied');
      // One more run: a check the push set off has started by its end (it is asked for as the
      // push's run ends), and the daemon waits for a check in progress before it exits.
      daemon.signal('SIGHUP');
      assert.equal((await daemon.finished(3)).status, 'unchanged');
      await daemon.stop();
      daemon = undefined;
      return checks() - before;
    };
    const extension = await lookupsAround({ 'extensions/staff.yaml': `extensions:\n  - { number: "1001", md5: ${'a'.repeat(32)} }\n  - { number: "1002", md5: ${'b'.repeat(32)} }\n` });
    const ports = await lookupsAround({ 'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', 'external_address: auto').replace('port_end: 20000', 'port_end: 19000') });
    assert.ok(extension >= 1, 'the check at start looked the address up');
    assert.equal(ports - extension, 1, `one more check after the RTP ports changed (${extension} lookups around the extension, ${ports} around the ports)`);
  });

  it('under eip_policy alert reports an explicit address that is not the Elastic IP, and changes nothing', async () => {
    await remote.commit({ 'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', 'external_address: 192.0.2.44') });
    await remote.push();
    const settings = await daemonSettings(host, { url: remote.url, cloudSchedule: '* * * * * *', cloud: { imds: imds.url, ec2: ec2.url } });
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    await daemon.finished(1);
    await daemon.waitFor((l) => l.some((x) => x.event === 'drift.eip'), 'drift.eip');
    const drift = daemon.events('drift.eip')[0]!;
    assert.equal(drift.level, 'error');
    assert.match(String(drift.msg), /192\.0\.2\.44/);
    assert.equal(host.asterisk.liveState().transports['transport-udp']?.external_media_address, '192.0.2.44');

    // The drift is in the state: status says UNHEALTHY and --json lists it with kind and since.
    while (!Object.keys(await readDrifts(host.stateDir)).some((k) => k.startsWith('cloud:drift.eip'))) await new Promise((r) => setTimeout(r, 50));
    const out: string[] = [];
    const sink: Io = { out: (t) => void out.push(t), err: (t) => void out.push(t) };
    assert.equal(await statusCommand({ settingsFile: settings, json: true }, sink), 3);
    const status = JSON.parse(out.join('\n'));
    assert.equal(status.healthy, false);
    const eip = status.drifts.find((d: { key: string }) => d.key.startsWith('cloud:drift.eip'));
    assert.equal(eip.kind, 'cloud');
    assert.equal(eip.severity, 'error');
    assert.match(eip.message, /192\.0\.2\.44/);
    assert.ok(!Number.isNaN(Date.parse(eip.since)));
    assert.ok(status.problems.some((p: string) => p.startsWith('drift (cloud:drift.eip')));
  });

  it('runs the cloud checks while Asterisk is down, and records each run that cannot apply as ami.unreachable', async () => {
    await remote.commit({ 'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', 'external_address: 192.0.2.44') });
    await remote.push();
    const settings = await daemonSettings(host, { url: remote.url, cloudSchedule: '* * * * * *', cloud: { imds: imds.url, ec2: ec2.url } });
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    await daemon.finished(1);
    await daemon.stop();
    // Asterisk goes down; the agent is restarted (a reboot with asterisk.service failing, say).
    await host.asterisk.stop();
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    await daemon.waitFor((l) => l.some((x) => x.event === 'drift.eip'), 'drift.eip with AMI down');
    await daemon.waitFor((l) => l.some((x) => x.event === 'ami.unreachable'), 'ami.unreachable');
    let state = await new StateStore(host.stateDir).read();
    while (state.lastRun?.code !== 'ami.unreachable') {
      await new Promise((r) => setTimeout(r, 100));
      state = await new StateStore(host.stateDir).read();
    }
    assert.equal(state.lastRun.status, 'failed');
    assert.match(state.lastRun.error ?? '', /Asterisk Manager is not connected/);
    assert.ok(state.consecutiveFailures >= 1);
    await host.asterisk.start();
  });

  it('under eip_policy adopt renders the Elastic IP in place of the explicit address', async () => {
    await remote.commit({ 'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', 'external_address: 192.0.2.44') });
    await remote.push();
    const settings = await daemonSettings(host, { url: remote.url, cloudSchedule: '* * * * * *', cloud: { imds: imds.url, ec2: ec2.url, eipPolicy: 'adopt' } });
    daemon = DaemonProcess.start(settings, { env: loopbackAwsEnv() });
    await daemon.finished(1);
    await daemon.waitFor(() => host.asterisk.liveState().transports['transport-udp']?.external_media_address === FIRST_EIP, 'the Elastic IP adopted');
    // The adoption is a request kept in the state (it survives a restart), with where it came from.
    const state = await new StateStore(host.stateDir).read();
    assert.equal(state.adopted?.address, FIRST_EIP);
    assert.deepEqual(state.applied?.network?.advertised, { address: FIRST_EIP, source: 'adopted', configured: '192.0.2.44' });

    // pbx.yaml is corrected to the Elastic IP: nothing is left to override.
    await remote.commit({ 'pbx.yaml': BASE_PBX.replace('external_address: 203.0.113.10', `external_address: ${FIRST_EIP}`) });
    await remote.push();
    daemon.signal('SIGHUP');
    let after = await new StateStore(host.stateDir).read();
    while (after.applied?.network?.advertised.source !== 'config') {
      await new Promise((r) => setTimeout(r, 100));
      after = await new StateStore(host.stateDir).read();
    }
    assert.equal(after.adopted, undefined);
  });
});
