/**
 * FakeAsterisk's live objects (test/support/ami-server.ts, test/support/ari-server.ts): astdb over
 * AMI (DBPut, DBGet, DBDel, DBDelTree), the sorcery.conf mapping that puts astdb family
 * pbx-agent-live/<type> before pjsip.conf for endpoints, auths and aors, and ARI's dynamic
 * configuration resource. Every expected text is the real Asterisk's, from its sources (cited in
 * the double).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { AmiClient, header } from '../agent/asterisk/ami.js';
import { AriClient } from '../agent/asterisk/ari.js';
import { FakeAsterisk, LIVE_OBJECTS_FAMILY } from './support/ami-server.js';
import type { FakeAsteriskOptions } from './support/ami-server.js';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

function person(n: string): string {
  return [
    `[${n}]`, 'type=endpoint', 'context=internal', 'disallow=all', 'allow=ulaw', `auth=${n}`, `aors=${n}`, '',
    `[${n}]`, 'type=auth', 'auth_type=userpass', `username=${n}`, `password=secret${n}`, '',
    `[${n}]`, 'type=aor', 'max_contacts=1', '',
  ].join('\n');
}

const PJSIP = ['[transport-udp]', 'type=transport', 'protocol=udp', 'bind=127.0.0.1:5060', ''].join('\n') + person('1001') + person('1002');

const ENDPOINT_FAMILY = `${LIVE_OBJECTS_FAMILY}/endpoint`;
const AOR_FAMILY = `${LIVE_OBJECTS_FAMILY}/aor`;
const AUTH_FAMILY = `${LIVE_OBJECTS_FAMILY}/auth`;

/** An endpoint as the agent writes it into astdb: JSON object of field -> string, disallow before allow. */
const LIVE_1001 = JSON.stringify({ context: 'live', disallow: 'all', allow: 'opus,ulaw', aors: '1001', auth: '1001' });

const ARI_USER = { username: 'pbx-agent', password: 'ari-test-secret' };

interface Harness {
  dir: string;
  fake: FakeAsterisk;
  clients: AmiClient[];
  sockets: net.Socket[];
}

const harnesses: Harness[] = [];

async function startFake(options: Partial<FakeAsteriskOptions> = {}, pjsip = PJSIP): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fake-live-objects-'));
  const file = path.join(dir, 'pjsip.conf');
  writeFileSync(file, pjsip);
  const t = Math.floor(Date.now() / 1000) - 10;
  utimesSync(file, t, t);
  const fake = new FakeAsterisk({ configDir: dir, ari: ARI_USER, ...options });
  await fake.start();
  const h: Harness = { dir, fake, clients: [], sockets: [] };
  harnesses.push(h);
  return h;
}

async function connect(h: Harness): Promise<AmiClient> {
  const c = new AmiClient({
    host: '127.0.0.1', port: h.fake.port, username: 'gitops', secret: 'gitops-secret',
    connectTimeoutMs: 2000, actionTimeoutMs: 2000, reconnectInitialMs: 20, reconnectMaxMs: 200,
  });
  h.clients.push(c);
  await c.connect();
  return c;
}

async function cleanup(): Promise<void> {
  for (const h of harnesses.splice(0)) {
    for (const c of h.clients) await c.close();
    for (const s of h.sockets) s.destroy();
    await h.fake.stop();
    rmSync(h.dir, { recursive: true, force: true });
  }
}

async function dbPut(c: AmiClient, family: string, key: string, value: string): Promise<void> {
  const r = await c.action({ Action: 'DBPut', Family: family, Key: key, Val: value });
  assert.equal(r.response, 'Success', r.message);
}

async function endpointContext(c: AmiClient, name: string): Promise<string | undefined> {
  const details = await c.showEndpoint(name);
  return details ? header(details.endpoint, 'Context') : undefined;
}

interface AriReply {
  status: number;
  statusText: string;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/**
 * One ARI request with the harness's user (or `auth`), JSON body when given. A new connection
 * each time: a restart of the fake drops kept-alive ones, as Asterisk's does.
 */
async function ari(h: Harness, method: string, resource: string, body?: unknown, auth: { username: string; password: string } = ARI_USER): Promise<AriReply> {
  const headers: Record<string, string> = {
    authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`,
  };
  let payload: string | undefined;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const url = new URL(`${h.fake.ariUrl}/ari/asterisk/config/dynamic/${resource}`);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false }, resolve);
    req.on('error', reject);
    req.end(payload);
  });
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: res.headers, text, json };
}

function fields(list: Array<[string, string]>): { fields: Array<{ attribute: string; value: string }> } {
  return { fields: list.map(([attribute, value]) => ({ attribute, value })) };
}

/** The value of one attribute in an ARI field list. */
function attribute(json: unknown, name: string): string | undefined {
  return (json as Array<{ attribute: string; value: string }>).find((f) => f.attribute === name)?.value;
}

/** A raw AMI session, logged in, for checks of the bytes on the wire. */
async function rawSession(h: Harness) {
  const socket = net.connect(h.fake.port, '127.0.0.1');
  h.sockets.push(socket);
  socket.setEncoding('utf8');
  let received = '';
  const waiters: Array<() => void> = [];
  socket.on('data', (d: string) => {
    received += d;
    for (const w of waiters.splice(0)) w();
  });
  const session = {
    send: (lines: string[]) => socket.write(lines.map((l) => `${l}\r\n`).join('') + '\r\n'),
    async waitFor(pred: (text: string) => boolean): Promise<void> {
      while (!pred(received)) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    /** What arrived since the last take(). */
    take(): string {
      const text = received;
      received = '';
      return text;
    },
  };
  session.send(['Action: Login', 'Username: gitops', 'Secret: gitops-secret', 'Events: off']);
  await session.waitFor((t) => t.includes('Authentication accepted\r\n\r\n'));
  session.take();
  return session;
}

// ---------------------------------------------------------------------------------------------
// astdb over AMI
// ---------------------------------------------------------------------------------------------

describe('FakeAsterisk astdb over AMI (main/db.c)', () => {
  afterEach(cleanup);

  it('answers DBGet with a one-item DBGetResponse list whose ActionID follows Val, and the real errors', async () => {
    const h = await startFake();
    const raw = await rawSession(h);
    raw.send(['Action: DBPut', 'ActionID: p1', 'Family: test', 'Key: k', 'Val: v 1']);
    raw.send(['Action: DBGet', 'ActionID: g1', 'Family: test', 'Key: k']);
    await raw.waitFor((t) => t.includes('Event: DBGetComplete'));
    await raw.waitFor((t) => t.endsWith('ListItems: 1\r\n\r\n'));
    assert.equal(raw.take(), [
      'Response: Success\r\nActionID: p1\r\nMessage: Updated database successfully\r\n\r\n',
      'Response: Success\r\nActionID: g1\r\nEventList: start\r\nMessage: Result will follow\r\n\r\n',
      'Event: DBGetResponse\r\nFamily: test\r\nKey: k\r\nVal: v 1\r\nActionID: g1\r\n\r\n',
      'Event: DBGetComplete\r\nActionID: g1\r\nEventList: Complete\r\nListItems: 1\r\n\r\n',
    ].join(''));

    const c = await connect(h);
    const error = async (fields: Record<string, string>) => {
      const r = await c.action(fields);
      assert.equal(r.response, 'Error');
      return r.message;
    };
    assert.equal(await error({ Action: 'DBGet', Family: 'test', Key: 'missing' }), 'Database entry not found');
    assert.equal(await error({ Action: 'DBGet', Key: 'k' }), 'No family specified.');
    assert.equal(await error({ Action: 'DBPut', Key: 'k', Val: 'v' }), 'No family specified');
    assert.equal(await error({ Action: 'DBPut', Family: 'test', Val: 'v' }), 'No key specified');
    assert.equal(await error({ Action: 'DBDel', Family: 'test', Key: 'missing' }), 'Database entry could not be deleted');
    assert.equal(await error({ Action: 'DBDelTree', Family: 'nothing-here' }), 'Database entry not found');
    assert.equal(await error({ Action: 'DBPut', Family: 'f'.repeat(200), Key: 'k'.repeat(60), Val: 'v' }), 'Failed to update entry');
    assert.match(h.fake.logText(), /WARNING\[\d+\] db\.c: AstDB key \/test\/missing does not exist/);
    assert.match(h.fake.logText(), /WARNING\[\d+\] db\.c: Family and key length must be less than 253 bytes/);

    assert.equal((await c.action({ Action: 'DBDel', Family: 'test', Key: 'k' })).message, 'Key deleted successfully');
    assert.equal(h.fake.astdbGet('test', 'k'), undefined);
  });

  it('deletes a whole family with DBDelTree, subfamilies included', async () => {
    const h = await startFake();
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    await dbPut(c, AOR_FAMILY, '1001', '{"max_contacts":"2"}');
    await dbPut(c, 'other', 'x', 'y');
    const r = await c.action({ Action: 'DBDelTree', Family: LIVE_OBJECTS_FAMILY });
    assert.equal(r.message, 'Key tree deleted successfully');
    assert.deepEqual(h.fake.astdbEntries(), [['/other/x', 'y']]);
  });

  it('counts DB actions in actionsReceived, and failNextAction fails the next one', async () => {
    const h = await startFake();
    const c = await connect(h);
    h.fake.failNextAction('DBPut', 'Failed to update entry');
    const r = await c.action({ Action: 'DBPut', Family: 'test', Key: 'k', Val: 'v' });
    assert.equal(r.response, 'Error');
    assert.equal(r.message, 'Failed to update entry');
    assert.equal(h.fake.astdbGet('test', 'k'), undefined, 'a failed DBPut wrote nothing');
    await dbPut(c, 'test', 'k', 'v');
    assert.equal(h.fake.actionCount('DBPut'), 2);
    const sent = h.fake.actionsReceived().filter((a) => a.action === 'DBPut').at(-1);
    assert.deepEqual(sent?.headers.filter(([name]) => name !== 'ActionID'), [['Action', 'DBPut'], ['Family', 'test'], ['Key', 'k'], ['Val', 'v']]);
  });

  it('refuses a message with a line longer than the 1,024-byte input buffer, without running it', async () => {
    const h = await startFake({ liveObjects: true });
    const raw = await rawSession(h);
    const big = JSON.stringify({ context: 'x'.repeat(1100) });
    raw.send(['Action: DBPut', 'ActionID: long', `Family: ${ENDPOINT_FAMILY}`, 'Key: 1001', `Val: ${big}`]);
    raw.send(['Action: Ping', 'ActionID: after']);
    await raw.waitFor((t) => t.includes('ActionID: after'));
    assert.match(raw.take(), /^Response: Error\r\nActionID: long\r\nMessage: Failed to parse message: line too long\r\n\r\nResponse: Success\r\nActionID: after\r\nPing: Pong/);
    assert.equal(h.fake.astdbGet(ENDPOINT_FAMILY, '1001'), undefined);
    assert.equal(h.fake.actionCount('DBPut'), 0, 'Asterisk never ran it');
    assert.match(h.fake.logText(), /WARNING\[\d+\] manager\.c: Discarding message from 127\.0\.0\.1\. Line too long: Val: \{"context":"x{8}\.\.\./);

    // 1,022 bytes and CRLF still fit.
    const fits = `Val: ${'y'.repeat(1022 - 5)}`;
    raw.send(['Action: DBPut', 'ActionID: fits', 'Family: test', 'Key: k', fits]);
    await raw.waitFor((t) => t.includes('ActionID: fits'));
    assert.match(raw.take(), /Message: Updated database successfully/);
  });

  it('keeps astdb across a restart', async () => {
    const h = await startFake();
    h.fake.astdbPut('test', 'k', 'v');
    await h.fake.restart();
    assert.equal(h.fake.astdbGet('test', 'k'), 'v');
  });
});

// ---------------------------------------------------------------------------------------------
// The live-objects mapping
// ---------------------------------------------------------------------------------------------

describe('FakeAsterisk live objects: astdb family pbx-agent-live before pjsip.conf', () => {
  afterEach(cleanup);

  it('a DBPut overrides the pjsip.conf endpoint in PJSIPShowEndpoint at once, with no reload', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    assert.equal(await endpointContext(c, '1001'), 'internal');
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    const details = await c.showEndpoint('1001');
    assert.equal(header(details!.endpoint, 'Context'), 'live');
    assert.equal(header(details!.endpoint, 'Allow'), '(opus|ulaw)');
    assert.deepEqual(details!.auths.map((a) => header(a, 'ObjectName')), ['1001'], 'its auth and aor come from pjsip.conf');
    assert.equal(h.fake.reloadCount(), 0);
    assert.equal(h.fake.configLoadCount('res_pjsip'), 1, 'pjsip.conf was read once, at start');
    assert.equal(h.fake.liveState().endpoints['1001']?.['context'], 'live');
  });

  it('without the mapping an astdb entry in the family changes nothing', async () => {
    const h = await startFake();
    assert.equal(h.fake.liveObjects, false);
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    await dbPut(c, ENDPOINT_FAMILY, '3001', LIVE_1001);
    assert.equal(await endpointContext(c, '1001'), 'internal');
    assert.equal(await c.showEndpoint('3001'), null);
    assert.deepEqual(h.fake.liveEndpoints(), ['1001', '1002']);
    const aorLines = (await c.command('pjsip show aor 1001')).filter((l) => /^\s*Aor:\s+1001\b/.test(l));
    assert.equal(aorLines.length, 1, 'pjsip show aor exists without the mapping too');
  });

  it('DBDel of the astdb object brings the pjsip.conf version back', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    assert.equal(await endpointContext(c, '1001'), 'live');
    const r = await c.action({ Action: 'DBDel', Family: ENDPOINT_FAMILY, Key: '1001' });
    assert.equal(r.message, 'Key deleted successfully');
    assert.equal(await endpointContext(c, '1001'), 'internal');
  });

  it('reads the mapping only at a start: enableLiveObjects() restarts Asterisk, and what astdb already had counts then', async () => {
    const h = await startFake();
    h.fake.astdbPut(ENDPOINT_FAMILY, '1001', LIVE_1001);
    const before = await connect(h);
    assert.equal(await endpointContext(before, '1001'), 'internal');
    await h.fake.enableLiveObjects();
    assert.equal(h.fake.liveObjects, true);
    const c = await connect(h);
    assert.equal(await endpointContext(c, '1001'), 'live');
    await h.fake.restart({ liveObjects: false });
    const after = await connect(h);
    assert.equal(await endpointContext(after, '1001'), 'internal');
  });

  it('a reload of res_pjsip re-reads pjsip.conf, and the astdb object still wins', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    writeFileSync(path.join(h.dir, 'pjsip.conf'), PJSIP.replace(/context=internal/g, 'context=changed'));
    await c.reload('res_pjsip.so');
    assert.equal(h.fake.configLoadCount('res_pjsip'), 2);
    assert.equal(await endpointContext(c, '1001'), 'live');
    assert.equal(await endpointContext(c, '1002'), 'changed');
  });

  it('keeps the contacts of an aor that pjsip.conf drops but astdb still has', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, AOR_FAMILY, '1002', '{"max_contacts":"2"}');
    h.fake.registerContact('1002', 'sip:1002@192.0.2.2:5060');
    writeFileSync(path.join(h.dir, 'pjsip.conf'), PJSIP.replace('[1002]\ntype=aor\nmax_contacts=1\n', ''));
    await c.reload('res_pjsip.so');
    assert.deepEqual(h.fake.liveState().contacts['1002'], ['sip:1002@192.0.2.2:5060']);
    assert.equal(h.fake.liveState().aors['1002']?.['max_contacts'], '2');
    assert.doesNotMatch(h.fake.logText(), /Endpoint 1002 is now Unreachable|Contact 1002\/.* has been deleted/);
  });

  it('treats a value that does not parse, or has no known field, as no object: the lookup falls through to pjsip.conf', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', '{"context": "live",');
    assert.equal(await endpointContext(c, '1001'), 'internal');
    await dbPut(c, ENDPOINT_FAMILY, '1001', '{"context": 5}');
    assert.equal(await endpointContext(c, '1001'), 'internal', 'a non-string field fails the whole object');
    await dbPut(c, ENDPOINT_FAMILY, '1001', '{"context":"live","no_such_option":"x"}');
    assert.equal(await endpointContext(c, '1001'), 'live', 'an unregistered field is dropped, the rest applies');
    await dbPut(c, ENDPOINT_FAMILY, '1001', '{"dtmf_mode":"smoke-signals"}');
    assert.equal(await endpointContext(c, '1001'), 'internal', 'a bad value fails the whole object');
    assert.match(h.fake.logText(), /ERROR\[\d+\] config_options\.c: Error parsing dtmf_mode=smoke-signals at line 0 of $/m);

    // res_sorcery_astdb.c:206: by id, an objectset left empty fails too, so `{}` is never found.
    await dbPut(c, AOR_FAMILY, 'probe', '{}');
    assert.deepEqual(await c.command('pjsip show aor probe'), ['Unable to find object probe.', '']);
    await dbPut(c, AOR_FAMILY, 'probe', '{"max_contacts":"0"}');
    assert.ok((await c.command('pjsip show aor probe')).some((l) => /^\s*Aor:\s+probe\b/.test(l)));
  });

  it('lists an id in astdb and pjsip.conf twice on Asterisk 20.6 (astdb first), once from 20.16 on', async () => {
    const old = await startFake({ liveObjects: true, version: '20.6.0' });
    const c = await connect(old);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    await dbPut(c, ENDPOINT_FAMILY, '2001', JSON.stringify({ context: 'live', aors: '2001' }));
    assert.deepEqual((await c.showEndpoints()).map((e) => e.name), ['1001', '2001', '1001', '1002']);

    const fixed = await startFake({ liveObjects: true, version: '20.16.0' });
    const d = await connect(fixed);
    await dbPut(d, ENDPOINT_FAMILY, '1001', LIVE_1001);
    await dbPut(d, ENDPOINT_FAMILY, '2001', JSON.stringify({ context: 'live', aors: '2001' }));
    assert.deepEqual((await d.showEndpoints()).map((e) => e.name), ['1001', '1002', '2001']);
    assert.deepEqual(fixed.fake.liveEndpoints(), ['1001', '1002', '2001']);
  });

  it('stops the astdb part of a listing at the first value that does not parse', async () => {
    const h = await startFake({ liveObjects: true, version: '20.16.0' });
    const c = await connect(h);
    await dbPut(c, AOR_FAMILY, '3001', '{"max_contacts":"1"}');
    await dbPut(c, AOR_FAMILY, '3002', 'not json');
    await dbPut(c, AOR_FAMILY, '3003', '{"max_contacts":"1"}');
    assert.deepEqual((await c.showAors()).map((a) => header(a, 'ObjectName')), ['1001', '1002', '3001']);
    assert.ok((await c.command('pjsip show aor 3003')).some((l) => /^\s*Aor:\s+3003\b/.test(l)), 'by id it is found');
  });

  it('shows an aor with `pjsip show aor` as res_pjsip prints it', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, AOR_FAMILY, '1001', '{"max_contacts":"3","qualify_frequency":"60"}');
    h.fake.registerContact('1001', 'sip:1001@192.0.2.1:5060');
    const out = await c.command('pjsip show aor 1001');
    // res_pjsip_cli.h: names indented to level * 2 + 1 + 8, the last column at 62, 90 wide.
    const uri = 'sip:1001@192.0.2.1:5060';
    const hash = createHash('md5').update(uri).digest('hex').slice(0, 10);
    assert.deepEqual(out.slice(0, 8), [
      '',
      '      Aor:  <Aor..............................................>  <MaxContact>',
      '    Contact:  <Aor/ContactUri............................> <Hash....> <Status> <RTT(ms)..>',
      '==========================================================================================',
      '',
      '      Aor:  1001                                                 3',
      `    Contact:  1001/sip:1001@192.0.2.1:5060                 ${hash} NonQual         nan`,
      '',
    ]);
    assert.ok(out.includes(' max_contacts         : 3'));
    assert.ok(out.includes(' qualify_frequency    : 60'));
    assert.equal(out.at(-1), '');
    assert.deepEqual(await c.command('pjsip show aor nope'), ['Unable to find object nope.', '']);
  });
});

// ---------------------------------------------------------------------------------------------
// ARI
// ---------------------------------------------------------------------------------------------

describe('FakeAsterisk ARI /ari/asterisk/config/dynamic (res/ari/resource_asterisk.c)', () => {
  afterEach(cleanup);

  it('creates an endpoint with PUT that PJSIPShowEndpoints lists and GET returns, stored in astdb', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    const aor = await ari(h, 'PUT', 'res_pjsip/aor/2001', fields([['max_contacts', '1']]));
    assert.equal(aor.status, 200);
    const put = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', fields([
      ['context', 'internal'], ['disallow', 'all'], ['allow', 'opus'], ['allow', 'ulaw'], ['aors', '2001'],
    ]));
    assert.equal(put.status, 200, put.text);
    assert.equal(put.headers['content-type'], 'application/json');
    assert.equal(attribute(put.json, 'context'), 'internal');
    assert.equal(attribute(put.json, 'allow'), '(opus|ulaw)');
    assert.equal(attribute(put.json, 'dtmf_mode'), 'rfc4733', 'the answer has every field, defaults included');

    assert.deepEqual((await c.showEndpoints()).map((e) => e.name).sort(), ['1001', '1002', '2001']);
    assert.deepEqual(JSON.parse(h.fake.astdbGet(ENDPOINT_FAMILY, '2001')!), { context: 'internal', aors: '2001', allow: '(opus|ulaw)' });
    const got = await ari(h, 'GET', 'res_pjsip/endpoint/2001');
    assert.equal(got.status, 200);
    assert.equal(attribute(got.json, 'aors'), '2001');

    // An update applies over what astdb has: allowing one more codec keeps the others.
    const update = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', fields([['allow', 'alaw'], ['context', 'other']]));
    assert.equal(update.status, 200, update.text);
    assert.equal(await endpointContext(c, '2001'), 'other');
    assert.equal(header((await c.showEndpoint('2001'))!.endpoint, 'Allow'), '(opus|ulaw|alaw)');

    const requests = h.fake.ariRequests();
    assert.deepEqual(requests.map((r) => [r.method, r.path, r.status]), [
      ['PUT', '/ari/asterisk/config/dynamic/res_pjsip/aor/2001', 200],
      ['PUT', '/ari/asterisk/config/dynamic/res_pjsip/endpoint/2001', 200],
      ['GET', '/ari/asterisk/config/dynamic/res_pjsip/endpoint/2001', 200],
      ['PUT', '/ari/asterisk/config/dynamic/res_pjsip/endpoint/2001', 200],
    ]);
    assert.deepEqual(JSON.parse(requests[0]!.body), fields([['max_contacts', '1']]));
    assert.equal(requests[0]!.user, 'pbx-agent');
  });

  it('refuses a PUT on an object only pjsip.conf has with 403, and writes nothing', async () => {
    const h = await startFake({ liveObjects: true });
    const r = await ari(h, 'PUT', 'res_pjsip/endpoint/1001', fields([['context', 'live']]));
    assert.equal(r.status, 403);
    assert.equal(r.statusText, 'Forbidden');
    assert.deepEqual(r.json, { message: "Cannot update sorcery objects of type 'endpoint'" });
    assert.equal(h.fake.astdbGet(ENDPOINT_FAMILY, '1001'), undefined);
    assert.equal(h.fake.liveState().endpoints['1001']?.['context'], 'internal');
  });

  it('without the mapping, refuses to create (no writable wizard) and to delete', async () => {
    const h = await startFake();
    const create = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', fields([['context', 'internal']]));
    assert.equal(create.status, 403);
    assert.deepEqual(create.json, { message: "Cannot create sorcery objects of type 'endpoint'" });
    const del = await ari(h, 'DELETE', 'res_pjsip/endpoint/1001');
    assert.equal(del.status, 403);
    assert.deepEqual(del.json, { message: "Could not delete object with id '1001'" });
    const got = await ari(h, 'GET', 'res_pjsip/endpoint/1001');
    assert.equal(got.status, 200, 'pjsip.conf objects can still be read');
    assert.equal(attribute(got.json, 'context'), 'internal');
  });

  it('deletes an astdb object with DELETE (204, then 404), which uncovers the pjsip.conf one', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, ENDPOINT_FAMILY, '1001', LIVE_1001);
    const del = await ari(h, 'DELETE', 'res_pjsip/endpoint/1001');
    assert.equal(del.status, 204);
    assert.equal(del.text, '');
    assert.equal(h.fake.astdbGet(ENDPOINT_FAMILY, '1001'), undefined);
    assert.equal(await endpointContext(c, '1001'), 'internal');
    const again = await ari(h, 'DELETE', 'res_pjsip/endpoint/1001');
    assert.equal(again.status, 403, 'what is left is pjsip.conf\'s');
    const missing = await ari(h, 'DELETE', 'res_pjsip/endpoint/9999');
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.json, { message: "Object with id '9999' not found" });
  });

  it('drops the registered contacts of an aor it deletes, and deletes one contact by its id', async () => {
    const h = await startFake({ liveObjects: true });
    const c = await connect(h);
    await dbPut(c, AOR_FAMILY, '1001', '{"max_contacts":"2"}');
    h.fake.registerContact('1001', 'sip:1001@192.0.2.1:5060');
    h.fake.registerContact('1001', 'sip:1001@192.0.2.9:5060');
    h.fake.registerContact('1002', 'sip:1002@192.0.2.2:5060');
    await c.ping();
    const events: string[] = [];
    c.on('event', (e) => {
      const fields = e.headers;
      events.push([e.event, header(fields, 'Peer') ?? header(fields, 'URI'), header(fields, 'PeerStatus') ?? header(fields, 'ContactStatus')].join(' '));
    });

    const contactId = FakeAsterisk.contactId('1002', 'sip:1002@192.0.2.2:5060');
    assert.match(contactId, /^1002;@[0-9a-f]{32}$/);
    const contact = await ari(h, 'DELETE', `res_pjsip/contact/${encodeURIComponent(contactId)}`);
    assert.equal(contact.status, 204);
    assert.equal(h.fake.liveState().contacts['1002'], undefined);

    const aor = await ari(h, 'DELETE', 'res_pjsip/aor/1001');
    assert.equal(aor.status, 204);
    assert.equal(h.fake.liveState().contacts['1001'], undefined);
    assert.equal(h.fake.liveState().aors['1001']?.['max_contacts'], '1', "pjsip.conf's aor is back");
    await c.ping();
    assert.deepEqual(events, [
      'PeerStatus PJSIP/1002 Unreachable',
      'ContactStatus sip:1002@192.0.2.2:5060 Removed',
      'PeerStatus PJSIP/1001 Unreachable',
      'ContactStatus sip:1001@192.0.2.1:5060 Removed',
      'ContactStatus sip:1001@192.0.2.9:5060 Removed',
    ]);
    assert.equal((await ari(h, 'DELETE', `res_pjsip/contact/${encodeURIComponent(contactId)}`)).status, 404);
  });

  it('answers a bad password with 401, its challenge and body, and records the request', async () => {
    const h = await startFake({ liveObjects: true });
    const r = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', fields([['context', 'x']]), { username: 'pbx-agent', password: 'wrong' });
    assert.equal(r.status, 401);
    assert.equal(r.statusText, 'Unauthorized');
    assert.equal(r.headers['www-authenticate'], 'Basic realm="Asterisk REST Interface"');
    assert.equal(r.text, '{"message":"Authentication required"}');
    assert.equal(h.fake.astdbGet(ENDPOINT_FAMILY, '2001'), undefined);
    assert.deepEqual(h.fake.ariRequests().map((q) => [q.method, q.user, q.status]), [['PUT', 'pbx-agent', 401]]);
  });

  it('answers bad requests as res_ari does: unparsable body, unknown class or type, unknown field, no fields', async () => {
    const h = await startFake({ liveObjects: true });
    const bad = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', '{"fields": [');
    assert.deepEqual([bad.status, bad.statusText, bad.json], [400, 'Bad Request', { message: 'Error parsing request body' }]);
    const cls = await ari(h, 'GET', 'res_nothing/endpoint/2001');
    assert.deepEqual([cls.status, cls.json], [404, { message: "configClass 'res_nothing' not found" }]);
    const type = await ari(h, 'GET', 'res_pjsip/endpoints/2001');
    assert.deepEqual([type.status, type.json], [404, { message: "objectType 'endpoints' not found" }]);
    const field = await ari(h, 'PUT', 'res_pjsip/endpoint/2001', fields([['context', 'x'], ['no_such_option', 'y']]));
    assert.deepEqual([field.status, field.statusText, field.json], [400, 'Bad request', { message: "Creation of object '2001' failed field value validation" }]);
    assert.match(h.fake.logText(), /ERROR\[\d+\] config_options\.c: Could not find option suitable for category '2001' named 'no_such_option' at line 0 of $/m);
    const value = await ari(h, 'PUT', 'res_pjsip/aor/1001', fields([['max_contacts', 'three']]));
    assert.deepEqual([value.status, value.json], [400, { message: "Update of object '1001' failed field value validation" }]);
    const none = await ari(h, 'PUT', 'res_pjsip/aor/1001', {});
    assert.deepEqual([none.status, none.json], [400, { message: "Fields must be provided to update object '1001'" }]);
    const slash = await ari(h, 'GET', 'res_pjsip/endpoint/1001/');
    assert.deepEqual([slash.status, slash.json], [404, { message: 'ARI URLs do not end with a slash. Try /ari/asterisk/config/dynamic/res_pjsip/endpoint/1001' }]);
    const method = await ari(h, 'POST', 'res_pjsip/endpoint/1001');
    assert.deepEqual([method.status, method.headers['allow'], method.json], [405, 'OPTIONS,GET,PUT,DELETE', { message: 'Invalid method' }]);
    assert.equal(h.fake.astdbEntries().length, 0);
  });

  it('fails the next request of a method with failNextAri, and says 503 while Asterisk boots', async () => {
    const h = await startFake({ liveObjects: true });
    h.fake.failNextAri('PUT', 500, 'Allocation failed');
    const failed = await ari(h, 'PUT', 'res_pjsip/aor/2001', fields([['max_contacts', '1']]));
    assert.deepEqual([failed.status, failed.json], [500, { message: 'Allocation failed' }]);
    assert.equal(h.fake.astdbGet(AOR_FAMILY, '2001'), undefined);
    const next = await ari(h, 'PUT', 'res_pjsip/aor/2001', fields([['max_contacts', '1']]));
    assert.equal(next.status, 200);

    await h.fake.restart({ booting: true });
    const booting = await ari(h, 'GET', 'res_pjsip/aor/2001');
    assert.deepEqual([booting.status, booting.json], [503, { message: 'Asterisk not booted' }]);
    await h.fake.finishBooting();
    assert.equal((await ari(h, 'GET', 'res_pjsip/aor/2001')).status, 200, 'astdb and the ARI port survive the restart');
  });

  it('serves ARI under http.conf\'s prefix, where the agent\'s AriClient finds it', async () => {
    const h = await startFake({ liveObjects: true, httpPrefix: 'asterisk' });
    assert.match(h.fake.ariUrl, /^http:\/\/127\.0\.0\.1:\d+\/asterisk$/);
    const client = new AriClient({ url: h.fake.ariUrl, ...ARI_USER, timeoutMs: 2000 });
    try {
      await client.putObject('aor', '2001', [{ attribute: 'max_contacts', value: '1' }]);
      assert.equal(JSON.parse(h.fake.astdbGet(AOR_FAMILY, '2001')!).max_contacts, '1');
      assert.equal(await client.deleteObject('aor', '2001'), true);
      assert.equal(await client.deleteObject('aor', '2001'), false, 'a 404 the second time');
    } finally {
      client.close();
    }
    const outside = await fetch(`${h.fake.ariUrl.replace(/\/asterisk$/, '')}/ari/asterisk/config/dynamic/res_pjsip/aor/1001`);
    assert.equal(outside.status, 404);
    assert.match(await outside.text(), /The requested URL was not found on this server/);
  });
});
