/**
 * The AMI adapter (agent/asterisk/ami.ts) against FakeAsterisk (test/support/ami-server.ts) over
 * real TCP on 127.0.0.1, and FakeAsterisk itself against the real Asterisk 20 recordings
 * (test/fixtures/ami-transcripts, copied from /work/shared/reference/asterisk-20/transcripts).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AmiClient, AmiError, header } from '../agent/asterisk/ami.js';
import type { AmiConnectionOptions, AmiEvent } from '../agent/asterisk/ami.js';
import { FakeAsterisk } from './support/ami-server.js';
import type { FakeAsteriskOptions } from './support/ami-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TRANSCRIPTS = path.join(here, 'fixtures', 'ami-transcripts');

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/** One person the way the reference deployment configures them (g_getconfig_good.txt). */
function person(n: string, endpointExtra: string[] = [], aorExtra: string[] = []): string {
  return [
    `[${n}]`, 'type=endpoint', 'context=internal', 'disallow=all', 'allow=ulaw', `auth=${n}-auth`, `aors=${n}`,
    'direct_media=no', 'rtp_symmetric=yes', 'force_rport=yes', 'rewrite_contact=yes', ...endpointExtra, '',
    `[${n}-auth]`, 'type=auth', 'auth_type=userpass', `password=secret${n}`, `username=${n}`, '',
    `[${n}]`, 'type=aor', 'max_contacts=3', 'remove_existing=yes', ...aorExtra, '',
  ].join('\n');
}

const TRANSPORT = [
  '[transport-udp]', 'type=transport', 'protocol=udp', 'bind=127.0.0.1:5060',
  'external_media_address=203.0.113.10', 'external_signaling_address=203.0.113.10',
  'local_net=172.31.0.0/16', 'local_net=127.0.0.1/32', '',
].join('\n');

const BASE_PJSIP = TRANSPORT + person('6001') + person('6002') + person('6003');

const EXTENSIONS = [
  '[general]', 'static=yes', 'writeprotect=no', '',
  '[internal]',
  'exten => _6XXX,1,Dial(PJSIP/${EXTEN},20)',
  ' same => n,Hangup()',
  'exten => 600,1,Answer()',
  ' same => n,Echo()', '',
].join('\n');

const RTP = '[general]\nrtpstart=10000\nrtpend=20000\n';

/**
 * Write a config file with a fresh, strictly increasing mtime. Asterisk (and the fake) skip a
 * file whose size and mtime did not change, and two quick writes can share an mtime tick.
 */
let mtimeClock = Math.floor(Date.now() / 1000) + 100;
function writeConf(dir: string, name: string, text: string): void {
  const file = path.join(dir, name);
  writeFileSync(file, text);
  const t = ++mtimeClock;
  utimesSync(file, t, t);
}

interface Harness {
  dir: string;
  fake: FakeAsterisk;
  port: number;
  clients: AmiClient[];
  client(overrides?: Partial<AmiConnectionOptions>): AmiClient;
}

const harnesses: Harness[] = [];

async function startFake(files: Record<string, string>, options: Partial<FakeAsteriskOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fake-asterisk-'));
  for (const [name, text] of Object.entries(files)) writeConf(dir, name, text);
  const fake = new FakeAsterisk({ configDir: dir, ...options });
  const port = await fake.start();
  const h: Harness = {
    dir,
    fake,
    port,
    clients: [],
    client(overrides = {}) {
      const c = new AmiClient({
        host: '127.0.0.1', port, username: 'gitops', secret: 'gitops-secret',
        connectTimeoutMs: 2000, actionTimeoutMs: 2000, reconnectInitialMs: 20, reconnectMaxMs: 200, ...overrides,
      });
      h.clients.push(c);
      return c;
    },
  };
  harnesses.push(h);
  return h;
}

async function connected(h: Harness, overrides: Partial<AmiConnectionOptions> = {}): Promise<AmiClient> {
  const c = h.client(overrides);
  await c.connect();
  return c;
}

async function cleanup(): Promise<void> {
  for (const h of harnesses.splice(0)) {
    for (const c of h.clients) await c.close();
    await h.fake.stop();
    rmSync(h.dir, { recursive: true, force: true });
  }
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<AmiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AmiError, `expected AmiError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a rejection with ${code}`);
}

/** A raw TCP AMI session, for checks below the adapter. */
function rawSession(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  let received = '';
  const waiters: Array<() => void> = [];
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    received += d;
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((resolve) => socket.on('close', () => {
    resolve();
    for (const w of waiters.splice(0)) w();
  }));
  return {
    socket,
    closed,
    text: () => received,
    send: (lines: string[]) => socket.write(lines.map((l) => `${l}\r\n`).join('') + '\r\n'),
    async waitFor(pred: (text: string) => boolean): Promise<void> {
      while (!pred(received)) {
        if (socket.destroyed) throw new Error(`connection closed; received so far:\n${received}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------------------------

describe('AmiClient over TCP against FakeAsterisk', () => {
  afterEach(cleanup);

  it('logs in, sees FullyBooted, answers Ping and reports the Asterisk version from CoreSettings', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    assert.equal(c.state, 'connected');
    await c.ping();
    const settings = await c.coreSettings();
    assert.equal(settings.asteriskVersion, '20.6.0');
    assert.equal(settings.amiVersion, '9.0.0');
    assert.equal(c.fullyBooted, true);
  });

  it('rejects a wrong password with ami.auth_failed, and the server has closed the socket', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = h.client({ secret: 'wrong' });
    const err = await rejectsWith(c.connect(), 'ami.auth_failed');
    assert.match(err.message, /gitops/);
    assert.doesNotMatch(err.message, /wrong/, 'the secret must not appear in the error');

    // Below the adapter: Asterisk answers and then closes the connection itself.
    const raw = rawSession(h.port);
    raw.send(['Action: Login', 'Username: gitops', 'Secret: wrong', 'ActionID: x1']);
    await raw.closed;
    assert.equal(raw.text(), 'Asterisk Call Manager/9.0.0\r\nResponse: Error\r\nActionID: x1\r\nMessage: Authentication failed\r\n\r\n');
    assert.match(h.fake.logText(), /NOTICE\[\d+\] manager\.c: 127\.0\.0\.1 failed to authenticate as 'gitops'/);
  });

  it('rejects an unreachable AMI port with ami.unreachable', async () => {
    const probe = net.createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const c = new AmiClient({ host: '127.0.0.1', port, username: 'gitops', secret: 'x', connectTimeoutMs: 2000, actionTimeoutMs: 500 });
    await rejectsWith(c.connect(), 'ami.unreachable');
    await c.close();
  });

  it('answers actions sent before Login with the real "Permission denied"', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const raw = rawSession(h.port);
    raw.send(['Action: PJSIPShowEndpoints', 'ActionID: early']);
    await raw.waitFor((t) => t.endsWith('\r\n\r\n'));
    assert.equal(raw.text(), 'Asterisk Call Manager/9.0.0\r\nResponse: Error\r\nActionID: early\r\nMessage: Permission denied\r\n\r\n');
    raw.socket.destroy();
  });

  it('times out a Reload that hangs with ami.timeout naming the module; the next action works on a new connection', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h, { actionTimeoutMs: 300 });
    h.fake.hangReloads('res_pjsip');
    const err = await rejectsWith(c.reload('res_pjsip.so'), 'ami.timeout');
    assert.equal(err.module, 'res_pjsip.so');
    assert.match(err.message, /res_pjsip\.so/);

    // The hung session was dropped; a Ping goes through a fresh connection.
    await c.ping({ timeoutMs: 2000 });
    // Asterisk's reload lock is still held by the hung reload.
    await rejectsWith(c.reload('pbx_config'), 'ami.reload_in_progress');

    h.fake.hangReloads(null);
    await c.reload('pbx_config');
    assert.equal(h.fake.reloadCount('res_pjsip'), 1);
    assert.equal(h.fake.reloadCount('pbx_config'), 2);
  });

  it('collects list events by ActionID while unrelated events arrive in between', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    const unrelated: AmiEvent[] = [];
    c.on('event', (e) => unrelated.push(e));
    h.fake.injectEventsIntoNextList([
      { event: 'PeerStatus', fields: { ChannelType: 'PJSIP', Peer: 'PJSIP/6002', PeerStatus: 'Reachable' } },
      { event: 'ContactStatus', fields: { URI: 'sip:6002@127.0.0.1:5077', ContactStatus: 'NonQualified', AOR: '6002', EndpointName: '6002', RoundtripUsec: '0' } },
    ]);
    const endpoints = await c.showEndpoints();
    assert.deepEqual(endpoints.map((e) => e.name), ['6001', '6002', '6003']);
    assert.deepEqual(endpoints[0], {
      name: '6001', transport: '', aors: ['6001'], auths: ['6001-auth'], outboundAuths: [], contacts: [],
      deviceState: 'Unavailable', activeChannels: '0',
    });
    assert.deepEqual(unrelated.map((e) => e.event), ['PeerStatus', 'ContactStatus']);
    // Original-case header names are restored, including per-event ones (URI, AOR).
    assert.equal(unrelated[1]?.headers['URI'], 'sip:6002@127.0.0.1:5077');
    assert.equal(unrelated[0]?.headers['PeerStatus'], 'Reachable');
  });

  it('reports registered contacts per endpoint', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    h.fake.registerContact('6002', 'sip:6002@10.0.0.5:5060');
    const c = await connected(h);
    const ep = (await c.showEndpoints()).find((e) => e.name === '6002');
    assert.deepEqual(ep?.contacts, ['6002/sip:6002@10.0.0.5:5060']);
    assert.equal(ep?.deviceState, 'Not in use');
  });

  it('treats "No endpoints found" (an Error answer) as an empty list', async () => {
    const h = await startFake({ 'pjsip.conf': TRANSPORT });
    const c = await connected(h);
    assert.deepEqual(await c.showEndpoints(), []);
    assert.deepEqual(await c.showAors(), []);
  });

  it('parses the PJSIPShowEndpoint error for a missing endpoint (bare LF inside) as null and stays usable', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    // The wire bytes really contain the bare LF (README).
    const raw = rawSession(h.port);
    raw.send(['Action: Login', 'Username: gitops', 'Secret: gitops-secret']);
    raw.send(['Action: PJSIPShowEndpoint', 'Endpoint: 9999', 'ActionID: x']);
    await raw.waitFor((t) => t.includes('9999'));
    assert.ok(raw.text().endsWith('Response: Error\r\nActionID: x\r\nMessage: Unable to retrieve endpoint 9999\n\r\n\r\n'));
    raw.socket.destroy();

    const c = await connected(h);
    assert.equal(await c.showEndpoint('9999'), null);
    const detail = await c.showEndpoint('6001');
    assert.equal(detail?.endpoint['ObjectName'], '6001');
    await c.ping();
  });

  it('returns endpoint details with Asterisk header names and never the clear-text password', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    const d = await c.showEndpoint('6001');
    assert.ok(d);
    assert.equal(d.endpoint['DirectMedia'], 'false');
    assert.equal(d.endpoint['RtpSymmetric'], 'true');
    assert.equal(d.endpoint['Allow'], '(ulaw)');
    assert.equal(d.endpoint['100rel'], 'yes');
    assert.equal(header(d.aors[0] ?? {}, 'maxcontacts'), '3');
    assert.equal(d.auths[0]?.['Password'], c.secretFingerprint('secret6001'));
    assert.notEqual(d.auths[0]?.['Password'], c.secretFingerprint('secret6002'));
    assert.ok(!JSON.stringify(d).includes('secret6001'), 'clear-text password leaked');
    const config = await c.getConfig('pjsip.conf', { category: '6001-auth' });
    assert.ok(!JSON.stringify(config).includes('secret6001'), 'clear-text password leaked by GetConfig');
  });

  it('turns GetConfig of a file that does not parse into ami.invalid_config, a missing one into ami.config_not_found', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    writeConf(h.dir, 'pjsip.conf.new', BASE_PJSIP.replace('[6002-auth]', '[6002-auth'));
    const c = await connected(h);
    const err = await rejectsWith(c.getConfig('pjsip.conf.new'), 'ami.invalid_config');
    assert.match(err.message, /pjsip\.conf\.new/);
    await rejectsWith(c.getConfig('nosuch.conf'), 'ami.config_not_found');
    const rtp = await (async () => {
      writeConf(h.dir, 'rtp.conf', RTP);
      return c.getConfig('rtp.conf');
    })();
    assert.deepEqual(rtp, [{ name: 'general', isTemplate: false, templates: [], lines: [{ name: 'rtpstart', value: '10000' }, { name: 'rtpend', value: '20000' }] }]);
  });

  it('reconnects after a server restart and the next action works', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    const dropped = once(c, 'disconnected');
    const back = once(c, 'connected');
    await h.fake.restart();
    const [err] = (await dropped) as [AmiError];
    assert.equal(err.code, 'ami.disconnected');
    await back;
    await c.ping();
    assert.deepEqual((await c.showEndpoints()).map((e) => e.name), ['6001', '6002', '6003']);
  });

  it('lets an action issued while disconnected wait for the reconnect within its timeout', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    const dropped = once(c, 'disconnected');
    await h.fake.stop();
    await dropped;
    const pending = c.ping({ timeoutMs: 10_000 });
    await h.fake.start(h.port);
    await pending;
    // Without a server the same wait ends in ami.disconnected.
    const dropped2 = once(c, 'disconnected');
    await h.fake.stop();
    await dropped2;
    await rejectsWith(c.ping({ timeoutMs: 100 }), 'ami.disconnected');
  });

  it('survives the server closing the connection between actions', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    h.fake.closeAfterNextAction();
    await c.ping(); // answered, then the server hangs up
    await c.ping({ timeoutMs: 5000 });
    assert.equal(h.fake.actionCount('Login'), 2);
  });

  it('fails a Reload in flight when the connection drops with ami.disconnected (not repeated), and recovers', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    h.fake.closeAfterNextAction({ answer: false });
    await rejectsWith(c.reload('res_pjsip.so', 5000), 'ami.disconnected');
    assert.equal(h.fake.actionCount('Reload'), 1, 'a Reload is never sent twice by the adapter');
    await c.ping({ timeoutMs: 5000 });
  });

  it('repeats a read-only action once when the connection drops before answering it', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    h.fake.closeAfterNextAction({ answer: false });
    assert.equal((await c.showEndpoints({ timeoutMs: 5000 })).length, 3);
    assert.equal(h.fake.actionCount('PJSIPShowEndpoints'), 2);
  });

  it('drops a connection whose keepalive Ping goes unanswered (session stuck behind a hung Reload)', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h, { keepaliveMs: 50, actionTimeoutMs: 200 });
    h.fake.hangReloads('res_pjsip');
    // The reload's own timeout is long; the keepalive Ping queued behind it times out first.
    await rejectsWith(c.reload('res_pjsip', 30_000), 'ami.disconnected');
    h.fake.hangReloads(null);
    await c.ping({ timeoutMs: 5000 });
  });

  it('refuses values with line breaks (header injection) and Login/Logoff through action()', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    const c = await connected(h);
    await rejectsWith(c.action({ Action: 'Command', Command: 'core show version\r\nAction: Logoff' }), 'ami.bad_request');
    await rejectsWith(c.action({ Action: 'Logoff' }), 'ami.bad_request');
    assert.equal(h.fake.actionCount('Command'), 0);
  });

  it('maps Reload and Command errors to stable codes', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP, 'rtp.conf': RTP });
    const c = await connected(h);
    await rejectsWith(c.reload('res_nosuch.so'), 'ami.no_such_module');
    await rejectsWith(c.command('pjsip reload'), 'ami.no_such_command');
    const out = await c.command('rtp show settings');
    assert.ok(out.includes('  Port start:      10000'));
    assert.ok(out.includes('  Port end:        20000'));
    h.fake.failNextAction('Reload', 'An unknown error occurred');
    await rejectsWith(c.reload('res_pjsip'), 'ami.reload_failed');
  });

  it('answers a Reload before FullyBooted with Success but applies it only once booted', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP }, { booting: true });
    const c = await connected(h);
    assert.equal(c.fullyBooted, false);
    writeConf(h.dir, 'pjsip.conf', BASE_PJSIP + person('6004'));
    const r = await c.reload('res_pjsip.so');
    assert.equal(r.fullyBooted, false);
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    const booted = new Promise<void>((resolve) => c.on('event', (e) => e.event === 'FullyBooted' && resolve()));
    await h.fake.finishBooting();
    await booted;
    assert.equal(c.fullyBooted, true);
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003', '6004']);
  });
});

// ---------------------------------------------------------------------------------------------
// The config model: the bad-config cases recorded on a real Asterisk 20 (reference README)
// ---------------------------------------------------------------------------------------------

describe('FakeAsterisk config model matches what the real Asterisk 20 kept live', () => {
  afterEach(cleanup);

  async function setup(pjsip = BASE_PJSIP) {
    const h = await startFake({ 'pjsip.conf': pjsip });
    const c = await connected(h);
    h.fake.clearLog();
    return { h, c };
  }

  async function reloadWith(h: Harness, c: AmiClient, pjsip: string): Promise<void> {
    writeConf(h.dir, 'pjsip.conf', pjsip);
    await c.reload('res_pjsip.so'); // always Success: that proves nothing (DESIGN.md)
  }

  const context = async (c: AmiClient, ep: string) => (await c.showEndpoint(ep))?.endpoint['Context'];

  it('keeps the OLD endpoint when an existing endpoint gets an unknown option (e_1)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, TRANSPORT + person('6001') + person('6002', ['context=other', 'bogus_option=1']) + person('6003'));
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.equal(await context(c, '6002'), 'internal');
    const log = h.fake.logText();
    assert.match(log, /ERROR\[\d+\] config_options\.c: Could not find option suitable for category '6002' named 'bogus_option' at line \d+ of $/m);
    assert.match(log, /NOTICE\[\d+\] res_sorcery_config\.c: Retaining existing configuration for object of type 'endpoint' with id '6002'/);
  });

  it('does not create a NEW endpoint with an unknown option, and applies the rest (e_2)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, TRANSPORT + person('6001', ['context=changed']) + person('6002') + person('6003') + person('6004', ['bogus_option=1']));
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.equal(await context(c, '6001'), 'changed');
    assert.doesNotMatch(h.fake.logText(), /Retaining/);
  });

  it('rejects the whole file when a section header has no closing ] (e_3_syntax_bracket)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, (TRANSPORT + person('6001', ['context=changed']) + person('6002') + person('6003') + person('6004')).replace('[6002-auth]', '[6002-auth'));
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.equal(await context(c, '6001'), 'internal');
    const warnings = h.fake.logEntries('WARNING').filter((e) => /parse error: no closing '\]', line \d+ of \/etc\/asterisk\/pjsip\.conf/.test(e.message));
    assert.equal(warnings.length, 13, 'logged once per sorcery type, as recorded');
  });

  it('ignores a line with no = (WARNING) and applies the rest (e_3_syntax_noequals)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, TRANSPORT + person('6001', ['this line has no equals sign']) + person('6002') + person('6003') + person('6004'));
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003', '6004']);
    assert.match(h.fake.logText(), /WARNING\[\d+\] config\.c: No '=' \(equal sign\) in line \d+ of \/etc\/asterisk\/pjsip\.conf/);
  });

  it('keeps the old aor on max_contacts = three (e_4_bad_value)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, TRANSPORT + person('6001') + person('6002').replace('max_contacts=3', 'max_contacts=three') + person('6003'));
    assert.equal(h.fake.liveState().aors['6002']?.['max_contacts'], '3');
    assert.match(h.fake.logText(), /Error parsing max_contacts=three at line \d+ of $/m);
  });

  it('freezes every endpoint when two sections share name and type, so a new one is not created (e_4_dup_endpoint, e_5_dup_plus_new)', async () => {
    const { h, c } = await setup();
    const dup = '[6001]\ntype=endpoint\ncontext=dup\n\n';
    await reloadWith(h, c, TRANSPORT + person('6001') + person('6002', ['context=changed']) + person('6003') + person('6004') + dup);
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.equal(await context(c, '6002'), 'internal');
    // aors are another type: they are applied (6004's aor exists now).
    assert.ok(h.fake.liveState().aors['6004']);
    assert.match(h.fake.logText(), /configuration contains a duplicate object: '6001' of type 'endpoint'/);
  });

  it('starts with ZERO endpoints when pjsip.conf has a duplicate endpoint at startup (k_startup_dup), and a fixed reload brings them back (e_9)', async () => {
    const { h, c } = await setup();
    writeConf(h.dir, 'pjsip.conf', BASE_PJSIP + '[6001]\ntype=endpoint\n\n');
    await h.fake.restart();
    assert.deepEqual(h.fake.liveEndpoints(), []);
    assert.deepEqual(Object.keys(h.fake.liveState().aors), ['6001', '6002', '6003']);
    await once(c, 'connected');
    assert.deepEqual(await c.showEndpoints(), []);
    await reloadWith(h, c, BASE_PJSIP);
    assert.deepEqual((await c.showEndpoints()).map((e) => e.name), ['6001', '6002', '6003']);
  });

  it('starts with nothing at all when pjsip.conf does not parse at startup (l_startup_parse_error)', async () => {
    const { h } = await setup();
    writeConf(h.dir, 'pjsip.conf', BASE_PJSIP.replace('[6003-auth]', '[6003-auth'));
    await h.fake.restart();
    assert.deepEqual(h.fake.liveEndpoints(), []);
    assert.deepEqual(h.fake.liveState().aors, {});
    assert.equal(h.fake.logEntries('WARNING').filter((e) => /no closing/.test(e.message)).length, 14);
  });

  it('silently ignores a section with no type or a misspelt type (e_5_missing_type, e_5_bad_type)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, BASE_PJSIP + '[6007]\ncontext=internal\n\n[6008]\ntype=endpiont\ncontext=internal\n\n');
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.deepEqual(h.fake.logEntries().filter((e) => e.level === 'ERROR' || e.level === 'WARNING'), []);
  });

  it('accepts references to a missing aor or auth; the endpoint is Unavailable (e_5_dangling_refs)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, BASE_PJSIP + '[6006]\ntype=endpoint\ncontext=internal\nauth=nosuch-auth\naors=nosuch\n\n');
    const ep = (await c.showEndpoints()).find((e) => e.name === '6006');
    assert.equal(ep?.deviceState, 'Unavailable');
    assert.deepEqual(ep?.contacts, []);
  });

  it('accepts direct_media = maybe and means no', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, BASE_PJSIP.replace('direct_media=no', 'direct_media = maybe'));
    assert.equal((await c.showEndpoint('6001'))?.endpoint['DirectMedia'], 'false');
  });

  it('keeps the old transport bind and logs "not fully reloadable" (e_6_transport_bind_change)', async () => {
    const { h, c } = await setup();
    await reloadWith(h, c, BASE_PJSIP.replace('bind=127.0.0.1:5060', 'bind=0.0.0.0:5070').replace('local_net=127.0.0.1/32', 'local_net=10.0.0.0/8'));
    const out = await c.command('pjsip show transport transport-udp');
    assert.ok(out.includes(' bind                        : 127.0.0.1:5060'));
    assert.ok(out.includes(' local_net                   : 10.0.0.0/255.0.0.0'), 'local_net reloads live');
    assert.match(h.fake.logText(), /NOTICE\[\d+\] res_pjsip\/config_transport\.c: Transport 'transport-udp' is not fully reloadable/);
  });

  it('keeps the old config when pjsip.conf is missing (e_8)', async () => {
    const { h, c } = await setup();
    unlinkSync(path.join(h.dir, 'pjsip.conf'));
    await c.reload('res_pjsip.so');
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003']);
    assert.match(h.fake.logText(), /ERROR\[\d+\] res_sorcery_config\.c: Unable to load config file 'pjsip\.conf'/);
  });

  it('skips a reload when size and mtime are unchanged, even if the content changed', async () => {
    const { h, c } = await setup();
    const file = path.join(h.dir, 'pjsip.conf');
    const before = statSync(file);
    const loads = h.fake.configLoadCount('res_pjsip');
    writeFileSync(file, readFileSync(file, 'utf8').replace('password=secret6001', 'password=secret6009')); // same length
    utimesSync(file, before.atime, before.mtime);
    await c.reload('res_pjsip.so');
    assert.equal(h.fake.configLoadCount('res_pjsip'), loads, 'the file was not re-read');
    const auth = async () => (await c.showEndpoint('6001'))?.auths[0]?.['Password'];
    assert.equal(await auth(), c.secretFingerprint('secret6001'));

    const t = ++mtimeClock;
    utimesSync(file, t, t);
    await c.reload('res_pjsip.so');
    assert.equal(await auth(), c.secretFingerprint('secret6009'));
  });

  it('follows #include, rejects the file for a missing #include but not for a missing #tryinclude, and expands templates', async () => {
    const { h, c } = await setup();
    writeConf(h.dir, 'pjsip_people.conf', [
      '[person](!)', 'type=endpoint', 'context=internal', 'disallow=all', 'allow=ulaw', 'allow=opus', 'direct_media=no', '',
      '[6005](person)', 'aors=6005', '',
      '[6005]', 'type=aor', 'max_contacts=3', '',
    ].join('\n'));
    await reloadWith(h, c, BASE_PJSIP + '#include pjsip_people.conf\n#tryinclude pjsip_nosuch.conf\n');
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003', '6005']);
    assert.equal((await c.showEndpoint('6005'))?.endpoint['Allow'], '(ulaw|opus)');
    assert.deepEqual((await c.getConfig('pjsip_people.conf', { category: '6005' }))[0]?.templates, ['person']);

    await reloadWith(h, c, BASE_PJSIP + '#include pjsip_nosuch.conf\n');
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003', '6005'], 'old objects kept');
    await rejectsWith(c.getConfig('pjsip.conf'), 'ami.invalid_config');
  });

  it('re-reads a file when a new file appears in an included glob directory', async () => {
    const { h, c } = await setup(BASE_PJSIP + '#tryinclude pjsip.d/*.conf\n');
    const loads = h.fake.configLoadCount('res_pjsip');
    await c.reload('res_pjsip');
    assert.equal(h.fake.configLoadCount('res_pjsip'), loads, 'nothing changed: skipped');
    (await import('node:fs')).mkdirSync(path.join(h.dir, 'pjsip.d'));
    writeConf(h.dir, 'pjsip.d/6009.conf', person('6009'));
    await c.reload('res_pjsip');
    assert.deepEqual(h.fake.liveEndpoints(), ['6001', '6002', '6003', '6009']);
  });

  it('falls back to 5000-31000 when rtpstart >= rtpend (res_rtp_asterisk)', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP, 'rtp.conf': RTP });
    const c = await connected(h);
    assert.deepEqual(h.fake.liveState().rtp, { start: 10000, end: 20000 });
    writeConf(h.dir, 'rtp.conf', '[general]\nrtpstart=20000\nrtpend=10000\n');
    await c.reload('res_rtp_asterisk');
    assert.ok((await c.command('rtp show settings')).includes('  Port start:      5000'));
    assert.deepEqual(h.fake.liveState().rtp, { start: 5000, end: 31000 });
  });

  it('loads the dialplan (pbx_config) and voicemail boxes (app_voicemail)', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP, 'extensions.conf': EXTENSIONS });
    const c = await connected(h);
    writeConf(h.dir, 'extensions.conf', EXTENSIONS + '[other]\nexten => 700,1,VoiceMail(6001@default)\n');
    writeConf(h.dir, 'voicemail.conf', '[general]\nformat=wav\n\n[default]\n6001 => 1234,Alice Example,alice@example.com\n');
    await c.reload('pbx_config');
    await c.reload('app_voicemail');
    assert.deepEqual(h.fake.liveState().dialplan, { internal: ['_6XXX', '600'], other: ['700'] });
    assert.ok((await c.command('dialplan show other')).some((l) => l.includes("'700' =>")));
    assert.deepEqual(h.fake.liveState().voicemail, [{ context: 'default', mailbox: '6001', fullname: 'Alice Example', email: 'alice@example.com' }]);
    await rejectsWith(c.command('dialplan show nosuch'), 'ami.command_failed');
  });
});

// ---------------------------------------------------------------------------------------------
// Wire format: recorded sessions replayed byte for byte
// ---------------------------------------------------------------------------------------------

interface Exchange {
  id: string;
  request: string;
  expected: string;
}

/** `>>` sent, `<<` received, `(blank line)` ends a message, CRLF on the wire; a line with no prefix continues the previous one after a bare LF. */
function parseTranscript(text: string): { banner: string; exchanges: Exchange[] } {
  let banner = '';
  const exchanges: Exchange[] = [];
  let current: { id: string; sent: string[]; received: string[] } | null = null;
  let last: string[] | null = null;
  for (const line of text.replace(/\n$/, '').split('\n')) {
    const start = /^---- sending action (\S+) ----$/.exec(line);
    if (start) {
      if (current) exchanges.push(finish(current));
      current = { id: start[1] ?? '', sent: [], received: [] };
      last = null;
      continue;
    }
    if (line.startsWith('>> ') || line.startsWith('<< ')) {
      const content = line.slice(3) === '(blank line)' ? '' : line.slice(3);
      if (!current) {
        banner += `${content}\r\n`;
        continue;
      }
      last = line.startsWith('>>') ? current.sent : current.received;
      last.push(content);
      continue;
    }
    if (last && last.length) last[last.length - 1] += `\n${line}`;
  }
  if (current) exchanges.push(finish(current));
  return { banner, exchanges };

  function finish(x: { id: string; sent: string[]; received: string[] }): Exchange {
    return { id: x.id, request: x.sent.map((l) => `${l}\r\n`).join(''), expected: x.received.map((l) => `${l}\r\n`).join('') };
  }
}

/** Values that differ on every run. */
function mask(text: string): string {
  return text.replace(/^(Uptime|LastReload|Timestamp|CoreStartupDate|CoreStartupTime|CoreReloadDate|CoreReloadTime): [^\r\n]*/gm, '$1: <varies>');
}

const messages = (text: string) => text.split('\r\n\r\n').length - 1;

async function replay(
  file: string,
  port: number,
  options: { skip?: string[]; after?: Record<string, { messages: number; run: () => void }> } = {},
): Promise<void> {
  const { banner, exchanges } = parseTranscript(readFileSync(path.join(TRANSCRIPTS, file), 'utf8'));
  const raw = rawSession(port);
  let expected = banner;
  await raw.waitFor((t) => t.length >= banner.length);
  for (const x of exchanges) {
    if (options.skip?.includes(x.id)) continue;
    const hook = options.after?.[x.id];
    const before = messages(expected);
    raw.socket.write(x.request);
    if (hook) {
      await raw.waitFor((t) => messages(t) >= before + hook.messages);
      hook.run();
    }
    expected += x.expected;
    const want = messages(expected);
    await raw.waitFor((t) => messages(t) >= want);
  }
  await raw.closed; // every recorded session ends with Logoff: Asterisk hangs up
  assert.equal(mask(raw.text()), mask(expected), `${file}: bytes differ from the recording`);
}

describe('FakeAsterisk is byte-for-byte the recorded Asterisk 20 (transcripts replayed)', () => {
  afterEach(cleanup);

  const twoPeople = TRANSPORT + person('6001') + person('6002');

  it('c_basic.txt: Login, Reload, PJSIPShowEndpoints, pjsip show endpoints, CoreStatus, Logoff', async () => {
    const h = await startFake({ 'pjsip.conf': twoPeople });
    h.fake.registerContact('6001', 'sip:6001@127.0.0.1:5071');
    await replay('c_basic.txt', h.port);
  });

  it('d_add6003.txt: PJSIPShowEndpoint with EndpointDetail, AuthDetail, AorDetail', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    await replay('d_add6003.txt', h.port);
  });

  it('f_misc.txt: unknown module, module reload via Command, unknown CLI commands', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    await replay('f_misc.txt', h.port);
  });

  it('g_getconfig_bad.txt and g_getconfig_good.txt: GetConfig', async () => {
    const bad = await startFake({ 'pjsip.conf': BASE_PJSIP.replace('[6002-auth]', '[6002-auth') });
    await replay('g_getconfig_bad.txt', bad.port);
    const good = await startFake({ 'pjsip.conf': BASE_PJSIP });
    await replay('g_getconfig_good.txt', good.port);
  });

  it('i_full_reload_and_register_events.txt: Reload without Module', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    await replay('i_full_reload_and_register_events.txt', h.port);
  });

  it('j_register_events.txt: PeerStatus and ContactStatus when a device registers', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP });
    await replay('j_register_events.txt', h.port, {
      after: { a1: { messages: 2, run: () => h.fake.registerContact('6002', 'sip:6002@127.0.0.1:5077') } },
    });
  });

  it('m_*.txt: PJSIPShowAors, CoreSettings, rtp show settings, GetConfig, Ping', async () => {
    const h = await startFake({ 'pjsip.conf': twoPeople, 'rtp.conf': RTP }, { version: '20.20.1', runUser: 'root', runGroup: 'root' });
    h.fake.registerContact('6002', 'sip:6002@127.0.0.1:5077');
    // a2 was recorded while 6001's contact expired mid-answer (DeviceState "Not in use" next to
    // an aor with no contact): not a consistent state to reproduce. d_add6003.txt covers it.
    await replay('m_endpoint_detail_aors_coresettings_rtp_getconfig_ping.txt', h.port, { skip: ['a2'] });
  });

  it('o_confbridge_profiles.txt: confbridge show profile, a reload refused whole, an include cut short (Asterisk 22.10.1)', async () => {
    const rooms = readFileSync(path.join(TRANSCRIPTS, 'o_confbridge_profiles.conf'), 'utf8');
    const h = await startFake(
      { 'confbridge.conf': '[general]\n\n[default_user]\ntype=user\n\n[default_bridge]\ntype=bridge\n\n#tryinclude pbx-agent/confbridge.conf\n' },
      { version: '22.10.1' },
    );
    mkdirSync(path.join(h.dir, 'pbx-agent'));
    writeConf(h.dir, 'pbx-agent/confbridge.conf', rooms);
    await h.fake.restart();
    const rewrite = (text: string) => () => writeConf(h.dir, 'pbx-agent/confbridge.conf', text);
    await replay('o_confbridge_profiles.txt', h.port, {
      // a9 and a10 list the profiles in the order of Asterisk's hash container.
      skip: ['a9', 'a10'],
      after: {
        a8: { messages: 1, run: rewrite(rooms.replace('video_mode=follow_talker', 'video_mode=gallery')) },
        a12: { messages: 1, run: rewrite(rooms.replace('[pbx-agent-conf-801]\n', '[pbx-agent-conf-801\n')) },
      },
    });
    assert.match(h.fake.logText(), /ERROR\[1000\] config_options\.c: Error parsing video_mode=gallery at line 10 of \/etc\/asterisk\/pbx-agent\/confbridge\.conf/);
    assert.match(h.fake.logText(), /WARNING\[1000\] config\.c: parse error: no closing '\]', line 26 of \/etc\/asterisk\/pbx-agent\/confbridge\.conf/);
  });

  it('n_*.txt: pjsip show transport, dialplan show, missing endpoint (bare LF), module reloads', async () => {
    const h = await startFake({ 'pjsip.conf': BASE_PJSIP, 'extensions.conf': EXTENSIONS, 'rtp.conf': RTP });
    await replay('n_transport_detail_dialplan_missing_endpoint_module_reloads.txt', h.port);
  });
});
