import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIssue, loadDesiredState, readConfigRepo } from '../agent/load/index.js';
import type { DesiredState } from '../agent/model.js';
import { renderConfigRepo } from '../agent/pipeline.js';
import { planChanges } from '../agent/plan/index.js';
import { renderAsteriskFiles, type RenderedFile } from '../agent/render/index.js';
import { RenderMemo, renderPjsipConf } from '../agent/render/pjsip.js';
import { renderVoicemailConf, voicemailPin } from '../agent/render/voicemail.js';
import { DirectorySecretStore, md5Credential, resolveDesiredState, type HostFacts } from '../agent/resolve/index.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { assertGolden } from './support/golden.js';

const NO_SECRETS: HostFacts = {
  secrets: new DirectorySecretStore('/nonexistent-secrets-dir'),
  elasticIp: async () => ({ problem: 'not on EC2' }),
};

async function renderRepo(files: Record<string, string>, host: HostFacts = NO_SECRETS, revision = 'test') {
  return renderConfigRepo(await makeRepo(files), host, revision);
}
function file(files: RenderedFile[] | undefined, p: string): string {
  const f = files?.find((x) => x.path === p);
  assert.ok(f, `${p} was not rendered`);
  return f.body;
}

/** Sections of an Asterisk config body: name → list of `key=value` lines, in order. */
function sections(body: string): Array<{ name: string; lines: string[] }> {
  const out: Array<{ name: string; lines: string[] }> = [];
  for (const line of body.split('\n')) {
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) out.push({ name: header[1]!, lines: [] });
    else if (line && !line.startsWith(';')) out[out.length - 1]!.lines.push(line);
  }
  return out;
}
function sectionOf(body: string, name: string, type: string): string[] {
  const s = sections(body).find((x) => x.name === name && x.lines.includes(`type=${type}`));
  assert.ok(s, `no [${name}] of type ${type}`);
  return s.lines;
}

describe('render: desired state → Asterisk files', () => {
  after(removeTempRepos);

  it('renders the example repo to exactly the golden files', async () => {
    const outcome = await renderConfigRepo('examples/config-repo', NO_SECRETS, 'golden');
    assert.deepEqual(outcome.issues, []);
    for (const f of outcome.files!) await assertGolden(`example/${f.path}`, f.text);
  });

  it('is deterministic: same input, same bytes, whatever the file layout and order in the repo', async () => {
    const a = await renderRepo({
      'pbx.yaml': BASE_PBX,
      'extensions/a.yaml': `extensions:\n  - { number: "1002", md5: ${'b'.repeat(32)} }\n  - { number: "1001", md5: ${'a'.repeat(32)} }\n`,
    });
    const b = await renderRepo({
      'pbx.yaml': BASE_PBX,
      'extensions/z/late.yaml': `extensions:\n  - { number: "1001", md5: ${'a'.repeat(32)} }\n`,
      'extensions/early.yaml': `extensions:\n  - { number: "1002", md5: ${'b'.repeat(32)} }\n`,
    });
    assert.deepEqual(a.files!.map((f) => f.text), b.files!.map((f) => f.text));
    const again = await renderRepo({ 'pbx.yaml': BASE_PBX, 'extensions/z/late.yaml': `extensions:\n  - { number: "1001", md5: ${'a'.repeat(32)} }\n`, 'extensions/early.yaml': `extensions:\n  - { number: "1002", md5: ${'b'.repeat(32)} }\n` });
    assert.deepEqual(again.files!.map((f) => f.bodyHash), b.files!.map((f) => f.bodyHash));
  });

  it('renders every change exactly as a fresh render would, although unchanged extensions come from the previous render', async () => {
    const second = `  - { number: "1002", md5: ${'b'.repeat(32)}, codec_profile: video, voicemail: true }\n`;
    const base = (await renderRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': BASE_EXTENSIONS + second })).state!;
    assert.equal(base.extensions.length, 2);
    const first = base.extensions[0]!;
    const variants: Array<[string, (s: typeof base) => void]> = [
      ['name', (s) => (s.extensions[0] = { ...first, name: 'Someone Else' })],
      ['no name', (s) => (s.extensions[0] = (({ name: _n, ...rest }) => rest)(first))],
      ['context', (s) => (s.extensions[0] = { ...first, context: 'other' })],
      ['codec profile chosen', (s) => (s.extensions[0] = { ...first, codecProfile: 'video' })],
      ['max_contacts', (s) => (s.extensions[0] = { ...first, maxContacts: first.maxContacts + 1 })],
      ['qualify', (s) => (s.extensions[0] = { ...first, qualifySeconds: first.qualifySeconds + 5 })],
      ['voicemail', (s) => (s.extensions[0] = first.voicemail ? (({ voicemail: _v, ...rest }) => rest)(first) : { ...first, voicemail: {} })],
      ['credential', (s) => (s.extensions[0] = { ...first, credential: { kind: 'md5', hash: 'f'.repeat(32) } })],
      ['realm', (s) => (s.realm = 'pbx.example.net')],
      ['ice', (s) => (s.rtp = { ...s.rtp, ice: !s.rtp.ice })],
      ['voicemail code', (s) => (s.featureCodes = { voicemail: '*98' })],
      ['codec profile', (s) => (s.codecProfiles = s.codecProfiles.map((p) => ({ ...p, audio: [...p.audio].reverse() })))],
    ];
    for (const [i, [what, change]] of variants.entries()) {
      // The previous render, whose blocks are reused: alone, or inside the file with its header.
      if (i % 2 === 0) renderPjsipConf(base);
      else renderAsteriskFiles(base, `rev${i}`);
      const changed = structuredClone(base);
      change(changed);
      assert.equal(renderPjsipConf(changed), renderPjsipConf(changed, new RenderMemo()), what);
      assert.notEqual(renderPjsipConf(changed), renderPjsipConf(base, new RenderMemo()), `${what} makes a difference`);
    }
  });

  it('gives each box the PIN of its own number and credential, although PINs come from the previous render', async () => {
    const base = (await renderRepo({
      'pbx.yaml': BASE_PBX,
      'extensions/staff.yaml': `extensions:\n  - { number: "1001", md5: ${'a'.repeat(32)}, voicemail: true }\n  - { number: "1002", md5: ${'b'.repeat(32)}, voicemail: true }\n`,
    })).state!;
    const boxLine = (text: string, n: string) => text.split('\n').find((l) => l.startsWith(`${n} => `));
    const variants: Array<[string, (s: typeof base) => void]> = [
      ['credential', (s) => (s.extensions[0] = { ...s.extensions[0]!, credential: { kind: 'md5', hash: 'f'.repeat(32) } })],
      ['credentials swapped', (s) => ([s.extensions[0]!.credential, s.extensions[1]!.credential] = [s.extensions[1]!.credential, s.extensions[0]!.credential])],
    ];
    for (const [what, change] of variants) {
      renderVoicemailConf(base);
      const changed = structuredClone(base);
      change(changed);
      const text = renderVoicemailConf(changed);
      for (const ext of changed.extensions) assert.equal(boxLine(text, ext.number), `${ext.number} => ${voicemailPin(ext.number, ext.credential.hash)},${ext.number}`, what);
    }
  });

  it('renders from the previous render kept compressed between runs exactly as a fresh render would', async () => {
    const many = Array.from({ length: 300 }, (_, i) => `  - { number: "${2000 + i}", name: "Zoë ${i}", md5: ${'c'.repeat(32)} }\n`).join('');
    const base = (await renderRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': `extensions:\n${many}` })).state!;
    const memo = new RenderMemo();
    const before = renderPjsipConf(base, memo);
    await memo.compact();
    assert.ok(memo.storedBytes() < Buffer.byteLength(before) / 4, `kept ${memo.storedBytes()} bytes of ${Buffer.byteLength(before)}`);
    const changed = structuredClone(base);
    changed.extensions[150] = { ...changed.extensions[150]!, name: 'Someone Else' };
    assert.equal(renderPjsipConf(changed, memo), renderPjsipConf(changed, new RenderMemo()));
  });

  describe('pjsip.conf', () => {
    it('gives every transport the Elastic IP as external media and signalling address and every local_net', async () => {
      const out = await renderRepo({
        'pbx.yaml': edit(
          edit(BASE_PBX, '[172.31.0.0/16]', '[172.31.0.0/16, 10.8.0.0/16]'),
          'udp: { port: 5060 }',
          'udp: { port: 5060 }\n    tcp: { port: 5060 }\n    tls: { port: 5061, cert_file: /etc/asterisk/keys/pbx.crt, priv_key_file: /etc/asterisk/keys/pbx.key }',
        ),
        'extensions/a.yaml': BASE_EXTENSIONS,
      });
      const body = file(out.files, 'pbx-agent/pjsip.conf');
      const nat = ['external_media_address=203.0.113.10', 'external_signaling_address=203.0.113.10', 'local_net=172.31.0.0/16', 'local_net=10.8.0.0/16'];
      assert.deepEqual(sectionOf(body, 'transport-udp', 'transport'), ['type=transport', 'protocol=udp', 'bind=0.0.0.0:5060', ...nat]);
      assert.deepEqual(sectionOf(body, 'transport-tcp', 'transport'), ['type=transport', 'protocol=tcp', 'bind=0.0.0.0:5060', ...nat]);
      assert.deepEqual(sectionOf(body, 'transport-tls', 'transport'), [
        'type=transport', 'protocol=tls', 'bind=0.0.0.0:5061',
        'cert_file=/etc/asterisk/keys/pbx.crt', 'priv_key_file=/etc/asterisk/keys/pbx.key', 'method=tlsv1_2', ...nat,
      ]);
    });

    it('gives every endpoint the NAT settings, disallow=all before its codecs, and an aor that accepts registrations', async () => {
      const out = await renderRepo({
        'pbx.yaml': BASE_PBX,
        'extensions/a.yaml': `extensions:\n  - { number: "1001", name: Alice Example, md5: ${'a'.repeat(32)}, max_contacts: 3 }\n  - { number: "2001", md5: ${'b'.repeat(32)}, codec_profile: video, max_contacts: 1 }\n`,
      });
      const body = file(out.files, 'pbx-agent/pjsip.conf');
      assert.deepEqual(sectionOf(body, '1001', 'endpoint'), [
        'type=endpoint', 'context=internal', 'callerid="Alice Example" <1001>',
        'disallow=all', 'allow=opus', 'allow=ulaw',
        'direct_media=no', 'rtp_symmetric=yes', 'force_rport=yes', 'rewrite_contact=yes', 'dtmf_mode=rfc4733',
        'rtp_timeout=30', 'rtp_timeout_hold=300', 'aors=1001', 'auth=1001',
      ]);
      assert.deepEqual(sectionOf(body, '2001', 'endpoint'), [
        'type=endpoint', 'context=internal', 'callerid=<2001>',
        'disallow=all', 'allow=opus', 'allow=h264', 'allow=vp8', 'max_video_streams=1',
        'direct_media=no', 'rtp_symmetric=yes', 'force_rport=yes', 'rewrite_contact=yes', 'dtmf_mode=rfc4733',
        'rtp_timeout=30', 'rtp_timeout_hold=300', 'aors=2001', 'auth=2001',
      ]);
      assert.deepEqual(sectionOf(body, '1001', 'aor'), ['type=aor', 'max_contacts=3', 'remove_existing=yes', 'remove_unavailable=yes', 'qualify_frequency=30']);
      assert.deepEqual(sectionOf(body, '2001', 'aor'), ['type=aor', 'max_contacts=1', 'remove_existing=yes', 'remove_unavailable=yes', 'qualify_frequency=30']);
      assert.deepEqual(sectionOf(body, '1001', 'auth'), [
        'type=auth', 'auth_type=md5', 'username=1001', 'realm=asterisk', `md5_cred=${'a'.repeat(32)}`,
      ]);
    });

    it('leaves disabled extensions out entirely', async () => {
      const out = await renderRepo({
        'pbx.yaml': BASE_PBX,
        'extensions/a.yaml': `${BASE_EXTENSIONS}  - { number: "1002", md5: ${'b'.repeat(32)}, enabled: false }\n`,
      });
      for (const f of out.files!) assert.ok(!f.body.includes('1002'), `${f.path} mentions the disabled extension`);
    });

    it('turns a plain-text password into md5_cred so the password never reaches a file', async () => {
      const out = await renderRepo(
        { 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': edit(BASE_EXTENSIONS, `md5: ${'0123456789abcdef'.repeat(2)}`, 'password: "vT9-kq2Lm-8xZr"') },
      );
      const body = file(out.files, 'pbx-agent/pjsip.conf');
      assert.ok(body.includes(`md5_cred=${md5Credential('1001', 'asterisk', 'vT9-kq2Lm-8xZr')}`));
      for (const f of out.files!) assert.ok(!f.text.includes('vT9-kq2Lm-8xZr'));
    });
  });

  describe('secrets on the host', () => {
    const secretRepo = { 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': edit(BASE_EXTENSIONS, `md5: ${'0123456789abcdef'.repeat(2)}`, 'secret: alice') };
    async function hostWith(content: string, mode: number): Promise<HostFacts> {
      const dir = await tempDir('pbx-agent-secrets-');
      await writeFile(path.join(dir, 'alice'), content);
      await chmod(path.join(dir, 'alice'), mode);
      return { ...NO_SECRETS, secrets: new DirectorySecretStore(dir) };
    }

    it('reads a named secret from a root-only file and renders only its md5', async () => {
      const out = await renderRepo(secretRepo, await hostWith('k7-Hq2mVx93Lp\n', 0o600));
      assert.deepEqual(out.issues, []);
      const body = file(out.files, 'pbx-agent/pjsip.conf');
      assert.ok(body.includes(`md5_cred=${md5Credential('1001', 'asterisk', 'k7-Hq2mVx93Lp')}`));
      assert.ok(!body.includes('k7-Hq2mVx93Lp'));
    });

    it('refuses a secret file other users can read, naming the fix', async () => {
      const host = await hostWith('k7-Hq2mVx93Lp\n', 0o644);
      const dir = (host.secrets as DirectorySecretStore).dir;
      const out = await renderRepo(secretRepo, host);
      assert.equal(out.files, undefined);
      assert.deepEqual(out.issues.map(formatIssue), [
        `extensions/a.yaml:2:5: secret: secret "alice" for extension 1001: ${dir}/alice is readable by other users (mode 644); run chmod 600 ${dir}/alice`,
      ]);
    });

    it('refuses a missing secret and a weak one without printing it', async () => {
      const missing = await renderRepo(secretRepo);
      assert.deepEqual(missing.issues.map(formatIssue), [
        'extensions/a.yaml:2:5: secret: secret "alice" for extension 1001: no secret file /nonexistent-secrets-dir/alice; create it (mode 600, owned by the agent\'s user) holding the password',
      ]);
      const weak = await renderRepo(secretRepo, await hostWith('1001pass\n', 0o600));
      assert.deepEqual(weak.issues.map(formatIssue), [
        'extensions/a.yaml:2:5: secret: the password in secret "alice" for extension 1001 is shorter than 12 characters; use at least 12 characters mixing letters and digits',
      ]);
    });
  });

  describe('external_address: auto', () => {
    const autoRepo = { 'pbx.yaml': edit(BASE_PBX, 'external_address: 203.0.113.10', 'external_address: auto'), 'extensions/a.yaml': BASE_EXTENSIONS };
    it('uses the Elastic IP the host reports', async () => {
      const out = await renderRepo(autoRepo, { ...NO_SECRETS, elasticIp: async () => ({ address: '198.51.100.7' }) });
      assert.ok(file(out.files, 'pbx-agent/pjsip.conf').includes('external_media_address=198.51.100.7\nexternal_signaling_address=198.51.100.7\n'));
    });
    it('refuses to render when no Elastic IP is known', async () => {
      const out = await renderRepo(autoRepo);
      assert.equal(out.files, undefined);
      assert.deepEqual(out.issues.map(formatIssue), [
        'pbx.yaml: network.external_address: is "auto" but the Elastic IP cannot be used: not on EC2',
      ]);
    });
  });

  describe('rtp.conf', () => {
    it('renders the port range, and ICE with a STUN server when asked', async () => {
      const plain = await renderRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS });
      assert.equal(file(plain.files, 'pbx-agent/rtp.conf'), '[general]\nrtpstart=10000\nrtpend=20000\nicesupport=no\n');
      const ice = await renderRepo({ 'pbx.yaml': edit(BASE_PBX, 'port_end: 20000', 'port_end: 20000\n  ice: true\n  stun_server: stun.example.org:3478'), 'extensions/a.yaml': BASE_EXTENSIONS });
      assert.equal(file(ice.files, 'pbx-agent/rtp.conf'), '[general]\nrtpstart=10000\nrtpend=20000\nicesupport=yes\nstunaddr=stun.example.org:3478\n');
      assert.ok(sectionOf(file(ice.files, 'pbx-agent/pjsip.conf'), '1001', 'endpoint').includes('ice_support=yes'));
    });
  });

  describe('extensions.conf and voicemail.conf', () => {
    const repo = {
      'pbx.yaml': edit(BASE_PBX, 'internal: {}', 'internal: { includes: [outbound] }\n    lobby: {}'),
      'extensions/a.yaml': `extensions:\n  - { number: "1001", name: Alice Example, md5: ${'a'.repeat(32)}, voicemail: { email: alice@example.com } }\n  - { number: "1002", md5: ${'b'.repeat(32)}, context: lobby, ring_seconds: 20 }\n`,
    };

    it('lets every extension be dialled by number from every context, ringing all its devices, then voicemail', async () => {
      const out = await renderRepo(repo);
      const body = file(out.files, 'pbx-agent/extensions.conf');
      assert.ok(body.includes('exten => 1001,1,Gosub(pbx-agent-dial,s,1(1001,30,1001@pbx-agent))\nsame => n,Hangup()\nexten => 1001,hint,PJSIP/1001\n'));
      assert.ok(body.includes('exten => 1002,1,Gosub(pbx-agent-dial,s,1(1002,20,))\n'));
      assert.ok(body.includes('Set(LOCAL(contacts)=${PJSIP_DIAL_CONTACTS(${ARG1})})'), 'rings every registered contact');
      assert.ok(body.includes('GotoIf($["${contacts}" = ""]?absent)'), 'no Dial with an empty dial string');
      assert.ok(body.includes('same => n(nobody),Hangup(20)\n'), 'nothing registered and no mailbox: 480, not 603');
      assert.ok(body.includes('[internal]\ninclude => pbx-agent-extensions\ninclude => outbound\n'));
      assert.ok(body.includes('[lobby]\ninclude => pbx-agent-extensions\n'));
    });

    it('gives a voicemail box only to extensions that ask for one, and *97 only to box owners', async () => {
      const out = await renderRepo(repo);
      const pin = voicemailPin('1001', 'a'.repeat(32));
      assert.match(pin, /^-[0-9]{8}$/, 'an unchangeable PIN nobody is told');
      assert.equal(file(out.files, 'pbx-agent/voicemail.conf'), `[pbx-agent]\n1001 => ${pin},Alice Example,alice@example.com\n`);
      const endpoint = sectionOf(file(out.files, 'pbx-agent/pjsip.conf'), '1001', 'endpoint');
      assert.ok(endpoint.includes('mailboxes=1001@pbx-agent') && endpoint.includes('voicemail_extension=*97'));
      assert.ok(sectionOf(file(out.files, 'pbx-agent/pjsip.conf'), '1001', 'aor').includes('mailboxes=1001@pbx-agent'));
      assert.ok(!sectionOf(file(out.files, 'pbx-agent/pjsip.conf'), '1002', 'endpoint').some((l) => l.startsWith('mailboxes')));
      const dialplan = file(out.files, 'pbx-agent/extensions.conf');
      // The authenticated endpoint decides whose box opens, not the caller ID.
      assert.ok(dialplan.includes('exten => *97,1,Set(vmbox=${CHANNEL(endpoint)})\n'));
      assert.ok(dialplan.includes('same => n,GotoIf(${VM_INFO(${vmbox}@pbx-agent,exists)}?own)\n'));
      assert.ok(dialplan.includes('same => n(own),VoiceMailMain(${vmbox}@pbx-agent,s)\n'));
      assert.ok(!dialplan.includes('CALLERID'));
    });
  });

  describe('headers and change detection', () => {
    it('starts every file with a managed-by header naming the revision', async () => {
      const out = await renderRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS }, NO_SECRETS, 'abc123');
      for (const f of out.files!) {
        assert.ok(f.text.startsWith('; Managed by pbx-agent. Do not edit'), f.path);
        assert.ok(f.text.includes('; Rendered from config revision abc123.\n'), f.path);
      }
    });

    it('plans nothing when only the revision differs, and exactly the changed module when one extension changes', async () => {
      const loaded = loadDesiredState(await readConfigRepo(await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS })));
      const state = loaded.state as DesiredState;
      const { resolved } = await resolveDesiredState(state, NO_SECRETS, loaded.locate);
      const before = renderAsteriskFiles(resolved!, 'rev1');
      const onDisk = new Map(before.map((f) => [f.path, f.text]));
      const same = planChanges(renderAsteriskFiles(resolved!, 'rev2'), onDisk);
      assert.equal(same.changed, false);
      assert.deepEqual(same.reloads, []);

      const changed = structuredClone(resolved!);
      changed.extensions[0]!.maxContacts = 5;
      const plan = planChanges(renderAsteriskFiles(changed, 'rev3'), onDisk);
      assert.deepEqual(plan.reloads, ['res_pjsip']);
      assert.deepEqual(plan.files.map((f) => [f.path, f.action]), [
        ['pbx-agent/pjsip.conf', 'update'],
        ['pbx-agent/extensions.conf', 'unchanged'],
        ['pbx-agent/voicemail.conf', 'unchanged'],
        ['pbx-agent/rtp.conf', 'unchanged'],
        ['pbx-agent/confbridge.conf', 'unchanged'],
      ]);
    });
  });
});
