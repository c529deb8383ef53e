import assert from 'node:assert/strict';
import { renderConfigRepo } from '../agent/pipeline.js';
import { planChanges } from '../agent/plan/index.js';
import { comparePjsip, diffPjsipObjects, parsePjsipObjects } from '../agent/plan/objects.js';
import { DirectorySecretStore, type HostFacts } from '../agent/resolve/index.js';
import { BASE_PBX, edit, extensionsYaml, makeRepo, removeTempRepos, testMd5 } from './support/config-repo.js';

const transport = (extra = '') => `[transport-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0:5060\nexternal_media_address=203.0.113.10\nexternal_signaling_address=203.0.113.10\nlocal_net=172.31.0.0/16\n${extra}`;
const ext = (n: string, maxContacts = 3) =>
  `[${n}]\ntype=endpoint\ncontext=internal\naors=${n}\nauth=${n}\n\n[${n}]\ntype=auth\nauth_type=md5\nusername=${n}\nmd5_cred=${'a'.repeat(32)}\n\n[${n}]\ntype=aor\nmax_contacts=${maxContacts}\n`;

describe('plan: object changes in pjsip.conf', () => {
  it('parses sections of the same name but different type as separate objects', () => {
    assert.deepEqual(
      parsePjsipObjects(ext('1001')).map((o) => [o.name, o.type]),
      [['1001', 'endpoint'], ['1001', 'auth'], ['1001', 'aor']],
    );
  });

  it('names the extensions added, changed (in any of endpoint, auth, aor) and removed', () => {
    const before = transport() + ext('1001') + ext('1002') + ext('1003');
    const after = transport() + ext('1001') + ext('1002', 5) + ext('1004');
    assert.deepEqual(diffPjsipObjects(before, after), { added: ['1004'], changed: ['1002'], removed: ['1003'], restartReasons: [] });
  });

  it('does not call the last extension changed because another one now follows it', () => {
    const before = transport() + '\n' + ext('1001');
    const after = before + '\n' + ext('1002');
    assert.deepEqual(diffPjsipObjects(before, after), { added: ['1002'], changed: [], removed: [], restartReasons: [] });
  });

  it('applies a new Elastic IP or local_net with a reload, but asks for a restart when bind or protocol change', () => {
    const live = transport().replace(/203\.0\.113\.10/g, '198.51.100.7').replace('172.31.0.0/16', '10.0.0.0/16');
    assert.deepEqual(diffPjsipObjects(transport(), live).restartReasons, []);
    const rebound = transport().replace('bind=0.0.0.0:5060', 'bind=0.0.0.0:5080');
    assert.deepEqual(diffPjsipObjects(transport(), rebound).restartReasons, ['transport transport-udp changes bind']);
  });

  it('asks for a restart when a transport is added or removed', () => {
    const tcp = '[transport-tcp]\ntype=transport\nprotocol=tcp\nbind=0.0.0.0:5060\n';
    assert.deepEqual(diffPjsipObjects(transport(), transport() + tcp).restartReasons, ['transport transport-tcp is new']);
    assert.deepEqual(diffPjsipObjects(transport() + tcp, transport()).restartReasons, ['transport transport-tcp is removed']);
  });
});

describe('plan: only the part of pjsip.conf that differs is indexed, with the same answers', () => {
  const transport = (bind: string) => `; transports\n[transport-udp]\ntype=transport\nprotocol=udp\nbind=${bind}\nexternal_media_address=203.0.113.10\n`;
  const extension = (n: number, max = 3, realm = 'asterisk') =>
    `[${n}]\ntype=endpoint\ncontext=internal\naors=${n}\nauth=${n}\n\n[${n}]\ntype=auth\nauth_type=md5\nrealm=${realm}\nmd5_cred=${String(n).repeat(8)}\n\n[${n}]\ntype=aor\nmax_contacts=${max}\n`;
  const body = (numbers: number[], opts: { bind?: string; max?: Record<number, number>; realm?: Record<number, string> } = {}) =>
    [transport(opts.bind ?? '0.0.0.0:5060'), ...numbers.map((n) => extension(n, opts.max?.[n] ?? 3, opts.realm?.[n]))].join('\n');
  /** The comparison made the slow way: every section of both texts. */
  const everySection = (before: string, after: string) => {
    const index = (text: string) => new Map(parsePjsipObjects(text).map((o) => [`${o.type} ${o.name}`, o.options.join('\n')]));
    const [a, b] = [index(before), index(after)];
    const names = (m: Map<string, string>) => new Set([...m.keys()].filter((k) => !k.startsWith('transport ')).map((k) => k.split(' ')[1]!));
    const [na, nb] = [names(a), names(b)];
    return {
      added: [...nb].filter((n) => !na.has(n)).sort(),
      changed: [...nb].filter((n) => na.has(n) && ['endpoint', 'auth', 'aor'].some((t) => a.get(`${t} ${n}`) !== b.get(`${t} ${n}`))).sort(),
      removed: [...na].filter((n) => !nb.has(n)).sort(),
    };
  };
  const numbers = Array.from({ length: 40 }, (_, i) => 1000 + i);
  const cases: Array<[string, string, string]> = [
    ['identical', body(numbers), body(numbers)],
    ['one added at the end', body(numbers), body([...numbers, 2000])],
    ['one added first', body(numbers.slice(1)), body(numbers)],
    ['one added in the middle', body(numbers.filter((n) => n !== 1020)), body(numbers)],
    ['one removed in the middle', body(numbers), body(numbers.filter((n) => n !== 1020))],
    ['the last removed', body(numbers), body(numbers.slice(0, -1))],
    ['an aor changed', body(numbers), body(numbers, { max: { 1013: 5 } })],
    ['two far apart changed', body(numbers), body(numbers, { max: { 1001: 5, 1038: 1 } })],
    ['a transport changed', body(numbers), body(numbers, { bind: '0.0.0.0:5070' })],
    ['an extension moved to the end (a hand edit)', body(numbers), body([...numbers.filter((n) => n !== 1005), 1005])],
    ['from nothing', '', body(numbers)],
    ['to nothing', body(numbers), ''],
  ];
  for (const [what, before, after] of cases) {
    it(`finds what the whole comparison finds: ${what}`, () => {
      const fast = comparePjsip(before, after);
      const slow = everySection(before, after);
      assert.deepEqual({ added: [...fast.added].sort(), changed: [...fast.changed].sort(), removed: [...fast.removed].sort() }, slow);
    });
  }

  it('reads objects outside the differing part, counts every extension, and names a transport change', () => {
    const c = comparePjsip(body(numbers, { realm: { 1013: 'old' } }), body(numbers, { bind: '0.0.0.0:5070', max: { 1013: 5 } }));
    assert.equal(c.extensionsBefore, 40);
    assert.deepEqual(c.changed, ['1013']);
    assert.equal(c.object('aor', '1039')?.options.join(), 'max_contacts=3');
    assert.equal(c.objectBefore('auth', '1013')?.options.find((o) => o.startsWith('realm=')), 'realm=old');
    assert.deepEqual(c.transports().map((t) => t.name), ['transport-udp']);
    assert.deepEqual(c.restartReasons, ['transport transport-udp changes bind']);
  });
});

describe('plan: what a change would do to the phones, said loudly', () => {
  after(removeTempRepos);
  const HOST: HostFacts = { secrets: new DirectorySecretStore('/nonexistent-secrets-dir'), elasticIp: async () => ({ problem: 'not on EC2' }) };
  const exts = extensionsYaml(['1001', '1002']);
  async function warnings(before: string, after: string, extsAfter = exts): Promise<string[]> {
    const render = async (pbx: string, e: string) => (await renderConfigRepo(await makeRepo({ 'pbx.yaml': pbx, 'extensions/a.yaml': e }), HOST, 'r')).files!;
    const was = await render(before, exts);
    const plan = planChanges(await render(after, extsAfter), new Map(was.map((f) => [f.path, f.text])));
    return plan.warnings.map((w) => `${w.kind}: ${w.message}`);
  }

  it('warns that a new sip.realm locks out every phone whose md5 credential did not change with it', async () => {
    assert.deepEqual(await warnings(BASE_PBX, edit(BASE_PBX, 'rtp:', 'sip: { realm: acme }\nrtp:')), [
      'credentials_locked_out: sip.realm changes from "asterisk" to "acme" but the md5 credential of 1001 1002 stays the same: ' +
        'it was computed with the old realm, so these phones can no longer register (Asterisk answers 401). ' +
        'Compute each again with `pbx-agent md5 NUMBER --realm acme`, or keep the realm',
    ]);
    // Credentials computed again for the new realm: nobody is locked out.
    const recomputed = exts.replace(testMd5('1001'), 'a'.repeat(32)).replace(testMd5('1002'), 'b'.repeat(32));
    assert.deepEqual(await warnings(BASE_PBX, edit(BASE_PBX, 'rtp:', 'sip: { realm: acme }\nrtp:'), recomputed), []);
  });

  it('warns that a new SIP port cuts every phone off until each is set to it, and that a removed transport does too', async () => {
    assert.deepEqual(await warnings(BASE_PBX, edit(BASE_PBX, 'udp: { port: 5060 }', 'udp: { port: 5080 }')), [
      'transport_port: transport-udp moves from port 5060 to 5080: every phone must be set to the new port, and the security group must open it; Asterisk keeps listening on 5060 until it restarts',
    ]);
    assert.deepEqual(await warnings(edit(BASE_PBX, 'udp: { port: 5060 }', 'udp: { port: 5060 }\n    tcp: { port: 5060 }'), BASE_PBX), [
      'transport_removed: transport-tcp is removed: phones that reach the PBX over it can no longer do so once Asterisk restarts',
    ]);
  });

  it('warns that a new external address or RTP range must match the Elastic IP and the security group', async () => {
    assert.deepEqual(await warnings(BASE_PBX, edit(BASE_PBX, 'external_address: 203.0.113.10', 'external_address: 203.0.113.11')), [
      "external_address: the external address changes from 203.0.113.10 to 203.0.113.11: unless 203.0.113.11 is this instance's Elastic IP, phones outside the VPC get one-way audio (`pbx-agent check` compares them)",
    ]);
    assert.deepEqual(await warnings(BASE_PBX, edit(BASE_PBX, 'port_end: 20000', 'port_end: 12000')), [
      'rtp_range: the RTP range changes from 10000-20000 to 10000-12000: the security group must open UDP 10000-12000, or calls have no audio (`pbx-agent check` compares them)',
    ]);
  });

  it('says nothing about an ordinary change', async () => {
    assert.deepEqual(await warnings(BASE_PBX, BASE_PBX, extensionsYaml(['1001', '1002', '1003'])), []);
  });
});
