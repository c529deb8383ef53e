import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIssue, loadDesiredState, readConfigRepo, type RepoSnapshot } from '../agent/load/index.js';
import { MAX_FILE_BYTES } from '../agent/load/read-repo.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, makeRepo, removeTempRepos } from './support/config-repo.js';

async function load(files: Record<string, string>) {
  return loadDesiredState(await readConfigRepo(await makeRepo(files)));
}
async function problems(files: Record<string, string>): Promise<string[]> {
  return (await load(files)).issues.map(formatIssue);
}
/** The base repo with one edit in the extensions file. */
const ext = (from: string, to: string) => ({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': edit(BASE_EXTENSIONS, from, to) });
/** The base repo with one edit in pbx.yaml. */
const site = (from: string, to: string) => ({ 'pbx.yaml': edit(BASE_PBX, from, to), 'extensions/a.yaml': BASE_EXTENSIONS });
const md5Line = 'md5: 0123456789abcdef0123456789abcdef';

describe('load: the config repo contract', () => {
  after(removeTempRepos);

  it('loads the bundled example repo without a single issue, extensions sorted by number, disabled ones left out', async () => {
    const result = loadDesiredState(await readConfigRepo('examples/config-repo'));
    assert.deepEqual(result.issues, []);
    assert.deepEqual(
      result.state!.extensions.map((e) => e.number),
      ['1001', '1002', '1003', '2001'],
    );
    assert.deepEqual(result.summary, { files: 3, extensions: 4, disabled: 1 });
  });

  it('applies defaults once and lets an extension override them', async () => {
    const result = await load({
      'pbx.yaml': edit(BASE_PBX, 'codec_profile: voice\n', 'codec_profile: voice\n  max_contacts: 2\n  ring_seconds: 20\n'),
      'extensions/a.yaml': `extensions:\n  - { number: "1001", ${md5Line} }\n  - { number: "1002", ${md5Line}, max_contacts: 5, codec_profile: video, ring_seconds: 45 }\n`,
    });
    assert.deepEqual(result.issues, []);
    const [a, b] = result.state!.extensions;
    assert.deepEqual([a!.maxContacts, a!.codecProfile, a!.ringSeconds, a!.context], [2, 'voice', 20, 'internal']);
    assert.deepEqual([b!.maxContacts, b!.codecProfile, b!.ringSeconds], [5, 'video', 45]);
  });

  it('reads pbx.yaml again when it changed between two loads, and reports the same problems when it did not', async () => {
    const dir = await makeRepo({ 'pbx.yaml': edit(BASE_PBX, 'codec_profile: voice\n', 'codec_profile: voice\n  ring_seconds: 3000\n'), 'extensions/a.yaml': BASE_EXTENSIONS });
    const first = loadDesiredState(await readConfigRepo(dir));
    assert.ok(first.issues.some((i) => i.field === 'defaults.ring_seconds'), JSON.stringify(first.issues));
    const again = loadDesiredState(await readConfigRepo(dir));
    assert.deepEqual(again.issues.map(formatIssue), first.issues.map(formatIssue));
    await writeFile(path.join(dir, 'pbx.yaml'), edit(BASE_PBX, 'codec_profile: voice\n', 'codec_profile: voice\n  ring_seconds: 45\n'));
    const fixed = loadDesiredState(await readConfigRepo(dir));
    assert.deepEqual(fixed.issues, []);
    assert.equal(fixed.state!.extensions[0]!.ringSeconds, 45);
  });

  it('reads a file the same whether or not it needs the careful parser (anchors force it)', async () => {
    const body = `  - { number: "1001", name: Alice Example, md5: ${'a'.repeat(32)}, voicemail: { email: a@example.com } }\n  - { number: "1002", md5: ${'b'.repeat(32)}, enabled: false }\n`;
    const plain = await load({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': `extensions:\n${body}` });
    const anchored = await load({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': `x-unused: &anchor 1\nextensions:\n${body}` });
    assert.deepEqual(anchored.issues.map(formatIssue), [
      'extensions/a.yaml:1:1: x-unused: unknown field "x-unused"; expected one of: extensions',
    ]);
    const careful = await load({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': `extensions:\n${body}  - { number: "1003", md5: ${'c'.repeat(32)}, name: "R&D" }\n` });
    assert.deepEqual(careful.issues, []);
    assert.deepEqual(careful.state!.extensions.slice(0, 1), plain.state!.extensions);
  });

  it('keeps an unquoted md5 made only of digits (or digits and one e) as text', async () => {
    const result = await load(ext(md5Line, 'md5: 12345678901234567890123456789012\n  - { number: "1002", md5: 1234e678901234567890123456789012 }'));
    assert.deepEqual(result.issues, []);
    assert.deepEqual(result.state!.extensions.map((e) => e.credential), [
      { kind: 'md5', hash: '12345678901234567890123456789012' },
      { kind: 'md5', hash: '1234e678901234567890123456789012' },
    ]);
  });

  it('keeps an unquoted extension number exactly as written (0100 stays 0100, not 100)', async () => {
    const result = await load(ext('"1001"', '0100'));
    assert.deepEqual(result.issues, []);
    assert.equal(result.state!.extensions[0]!.number, '0100');
  });

  it('reports a malformed number with file, line, column, field, expectation and the value found', async () => {
    assert.deepEqual(await problems(ext('"1001"', '"10a1"')), [
      'extensions/a.yaml:2:13: extensions[0].number: expected an extension number of 2 to 12 digits, e.g. "1001", found "10a1"',
    ]);
  });

  it('names a misspelt field and suggests the right one', async () => {
    assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    max_contact: 3`)), [
      'extensions/a.yaml:5:5: extensions[0].max_contact: unknown field "max_contact"; did you mean "max_contacts"?',
    ]);
  });

  it('reports a missing field at the key of the map that should hold it', async () => {
    assert.deepEqual(await problems(site('  external_address: 203.0.113.10\n', '')), [
      `pbx.yaml:2:1: network.external_address: is missing: expected "auto" (the instance's Elastic IP) or an IPv4 address such as 203.0.113.10`,
    ]);
  });

  it('reports every problem of every file in one run, sorted by file and line', async () => {
    const out = await problems({
      'pbx.yaml': edit(BASE_PBX, 'port_start: 10000', 'port_start: "ten thousand"'),
      'extensions/a.yaml': edit(BASE_EXTENSIONS, 'name: Alice Example', 'name: "Alice <x>"'),
      'extensions/b.yaml': `extensions:\n  - { number: "1002", ${md5Line}, enabled: "no" }\n  - { number: "1003", ${md5Line}, max_contacts: 0 }\n`,
    });
    assert.deepEqual(out, [
      `extensions/a.yaml:3:11: extensions[0].name: expected a display name of letters, digits, spaces and . ' _ ( ) & / + @ - (no quotes, <, >, ;, commas, brackets or control characters), found "Alice <x>"`,
      'extensions/b.yaml:2:71: extensions[0].enabled: expected true or false, found "no"',
      'extensions/b.yaml:3:76: extensions[1].max_contacts: expected 1 to 20: with 0 Asterisk refuses every REGISTER (aor max_contacts defaults to 0), found 0',
      'pbx.yaml:8:15: rtp.port_start: expected a port number, found "ten thousand"',
    ]);
  });

  it('refuses an extension number defined twice and names both places', async () => {
    assert.deepEqual(await problems({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS, 'extensions/b.yaml': BASE_EXTENSIONS }), [
      'extensions/b.yaml:2:13: extensions[0].number: extension 1001 is defined twice; the other one is at extensions/a.yaml:2:13, found "1001"',
    ]);
  });

  it('refuses an extension number that collides with a feature code', async () => {
    assert.deepEqual(await problems(site('internal: {}', 'internal: {}\n  feature_codes: { voicemail: "1001" }')), [
      'extensions/a.yaml:2:13: extensions[0].number: collides with the voicemail feature code (dialplan.feature_codes.voicemail); pick another number or feature code, found "1001"',
    ]);
  });

  it('refuses an unknown codec profile and lists the defined ones', async () => {
    assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    codec_profile: hd`)), [
      'extensions/a.yaml:5:20: extensions[0].codec_profile: is not a profile under codec_profiles (defined: voice, video), found "hd"',
    ]);
    assert.deepEqual(await problems(site('codec_profile: voice', 'codec_profile: hd')), [
      'pbx.yaml:14:18: defaults.codec_profile: is not a profile under codec_profiles (defined: voice, video), found "hd"',
    ]);
  });

  it('refuses an extension with no codec profile when there is no default', async () => {
    assert.deepEqual(await problems(site('defaults:\n  codec_profile: voice\n', '')), [
      'extensions/a.yaml:2:5: extensions[0]: extension 1001 has no codec profile: set codec_profile here or defaults.codec_profile in pbx.yaml',
    ]);
  });

  it('refuses a context that is not declared in the dialplan', async () => {
    assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    context: sales`)), [
      'extensions/a.yaml:5:14: extensions[0].context: is not a context declared under dialplan.contexts (declared: internal), found "sales"',
    ]);
    assert.deepEqual(await problems(site('codec_profile: voice', 'codec_profile: voice\n  context: lobby')), [
      'pbx.yaml:15:12: defaults.context: is not a context declared under dialplan.contexts (declared: internal), found "lobby"',
    ]);
  });

  it('refuses a context name reserved for the agent', async () => {
    assert.deepEqual(await problems(site('internal: {}', 'internal: {}\n    pbx-agent-x: {}')), [
      `pbx.yaml:18:5: dialplan.contexts.pbx-agent-x: "pbx-agent-x" is not a valid name: context names starting with "pbx-agent" are reserved for the agent's own dialplan`,
    ]);
  });

  it('refuses a context named general or globals, in any case: extensions.conf never reads them as contexts', async () => {
    const why = 'cannot be "general" or "globals": extensions.conf reads those sections as settings, never as a dialplan context (phones in it would have no dialplan); pick another name';
    assert.deepEqual(await problems(site('internal: {}', 'internal: {}\n    Globals: {}')), [
      `pbx.yaml:18:5: dialplan.contexts.Globals: "Globals" is not a valid name: a context ${why}`,
    ]);
    assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    context: general`)), [
      `extensions/a.yaml:5:14: extensions[0].context: a context ${why}, found "general"`,
    ]);
    assert.deepEqual(await problems(site('codec_profile: voice', 'codec_profile: voice\n  context: GENERAL')), [
      `pbx.yaml:15:12: defaults.context: a context ${why}, found "GENERAL"`,
    ]);
  });

  it("refuses including the agent's own contexts, or general or globals", async () => {
    assert.deepEqual(await problems(site('internal: {}', 'internal: { includes: [outbound, pbx-agent-extensions, globals] }')), [
      `pbx.yaml:17:38: dialplan.contexts.internal.includes[1]: contexts starting with "pbx-agent" are the agent's own and cannot be included by name; every context under dialplan.contexts already reaches every extension, found "pbx-agent-extensions"`,
      'pbx.yaml:17:60: dialplan.contexts.internal.includes[2]: an included context cannot be "general" or "globals": extensions.conf reads those sections as settings, never as a dialplan context (phones in it would have no dialplan); pick another name, found "globals"',
    ]);
  });

  it('refuses a video profile whose video list is empty, with or without max_video_streams', async () => {
    const none = 'list at least one video codec, or leave video out for an audio-only profile, found a list';
    assert.deepEqual(await problems(site('video: [h264, vp8] }', 'video: [], max_video_streams: 1 }')), [
      `pbx.yaml:12:34: codec_profiles.video.video: ${none}`,
    ]);
    assert.deepEqual(await problems(site('video: [h264, vp8] }', 'video: [] }')), [`pbx.yaml:12:34: codec_profiles.video.video: ${none}`]);
  });

  it('refuses a STUN server port beyond 65535 or 0', async () => {
    for (const stun of ['stun.example.org:99999', 'stun.example.org:0']) {
      assert.deepEqual(await problems(site('port_end: 20000', `port_end: 20000\n  stun_server: ${stun}`)), [
        `pbx.yaml:10:16: rtp.stun_server: expected a port between 1 and 65535 after the host, e.g. stun.example.org:3478, found "${stun}"`,
      ]);
    }
  });

  it('refuses a context that includes itself', async () => {
    assert.deepEqual(await problems(site('internal: {}', 'internal: { includes: [internal] }')), [
      'pbx.yaml:17:28: dialplan.contexts.internal.includes[0]: a context cannot include itself, found "internal"',
    ]);
  });

  describe('RTP range', () => {
    it('refuses an odd start port', async () => {
      assert.deepEqual(await problems(site('port_start: 10000', 'port_start: 10001')), [
        'pbx.yaml:8:15: rtp.port_start: expected an even port: RTP uses even ports and RTCP the odd port above, found 10001',
      ]);
    });
    it('refuses an end at or below the start, which Asterisk would silently replace with 5000-31000', async () => {
      assert.deepEqual(await problems(site('port_end: 20000', 'port_end: 10000')), [
        'pbx.yaml:9:13: rtp.port_end: expected a port above port_start (10000); Asterisk would silently fall back to 5000-31000, found 10000',
      ]);
    });
    it('refuses a privileged start port and a port beyond 65535', async () => {
      assert.deepEqual(await problems(site('port_start: 10000', 'port_start: 1000')), [
        'pbx.yaml:6:18: network.transports.udp.port: is inside the RTP range 1000-20000; SIP and media ports must not overlap, found 5060',
        'pbx.yaml:8:15: rtp.port_start: expected 1024 or more: lower ports are privileged and used by other services, found 1000',
        'pbx.yaml:8:15: rtp.port_start: the RTP range 1000-20000 contains the AMI port 5038, found 1000',
      ]);
      assert.deepEqual(await problems(site('port_end: 20000', 'port_end: 70000')), [
        'pbx.yaml:9:13: rtp.port_end: expected a port between 1 and 65535, found 70000',
      ]);
    });
    it('refuses a range too small for the expected calls, counting video streams', async () => {
      assert.deepEqual(await problems(site('port_end: 20000', 'port_end: 10500\n  expected_calls: 100')), [
        'pbx.yaml:9:13: rtp.port_end: the range holds 501 ports but 100 calls with video need 800 (4 per call per media stream); widen the range or lower rtp.expected_calls, found 10500',
      ]);
    });
    it('refuses SIP or AMI ports inside the RTP range', async () => {
      assert.deepEqual(await problems(site('port_start: 10000', 'port_start: 5000')), [
        'pbx.yaml:6:18: network.transports.udp.port: is inside the RTP range 5000-20000; SIP and media ports must not overlap, found 5060',
        'pbx.yaml:8:15: rtp.port_start: the RTP range 5000-20000 contains the AMI port 5038, found 5000',
      ]);
    });
  });

  describe('network', () => {
    it('refuses a private external address: phones outside the VPC would get one-way audio', async () => {
      assert.deepEqual(await problems(site('external_address: 203.0.113.10', 'external_address: 172.31.5.9')), [
        `pbx.yaml:3:21: network.external_address: is a private (RFC 1918) address; it must be the instance's public Elastic IP (or "auto"), otherwise phones outside the VPC get one-way audio, found "172.31.5.9"`,
      ]);
    });
    it('refuses local_net 0.0.0.0/0 and a local_net that contains the external address', async () => {
      assert.deepEqual(await problems(site('[172.31.0.0/16]', '[0.0.0.0/0, 203.0.113.0/24]')), [
        'pbx.yaml:4:15: network.local_net[0]: covers every address: Asterisk would treat every phone as local and never use the external address (one-way audio); list only the VPC CIDR, found "0.0.0.0/0"',
        `pbx.yaml:4:26: network.local_net[1]: contains the external address 203.0.113.10; local_net must list only the VPC's private range, found "203.0.113.0/24"`,
      ]);
    });
    it('refuses TCP and TLS on the same port', async () => {
      const tls = 'udp: { port: 5060 }\n    tcp: { port: 5061 }\n    tls: { port: 5061, cert_file: /etc/asterisk/keys/a.crt, priv_key_file: /etc/asterisk/keys/a.key }';
      assert.deepEqual(await problems(site('udp: { port: 5060 }', tls)), [
        "pbx.yaml:8:18: network.transports.tls.port: is also the tcp transport's port; TCP and TLS need different ports (5060 and 5061), found 5061",
      ]);
    });
    it('refuses a transport map without any transport', async () => {
      assert.deepEqual(await problems(site('udp: { port: 5060 }', 'udp: ~')), [
        'pbx.yaml:6:10: network.transports.udp: expected a map, found an empty value',
      ]);
    });
  });

  describe('credentials', () => {
    it('refuses an extension without any credential', async () => {
      assert.deepEqual(await problems(ext(`    ${md5Line}\n`, '')), [
        'extensions/a.yaml:2:5: extensions[0]: extension 1001 has no credential: set one of secret (a file on the host), md5, or password',
      ]);
    });
    it('refuses two credentials at once', async () => {
      assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    secret: alice`)), [
        'extensions/a.yaml:4:5: extensions[0].md5: extension 1001 sets both secret and md5; set exactly one credential',
      ]);
    });
    for (const [password, why] of [
      ['Sh0rt-pass', 'is shorter than 12 characters'],
      ['123456789012', 'is digits only'],
      ['xx1001-abcdefgh', 'contains the extension number'],
      ['abababababab', 'uses fewer than 5 different characters'],
      ['Password1234', 'is a well-known weak password'],
      ['qwertyuiopas', 'is a keyboard or alphabet sequence'],
    ]) {
      it(`refuses a plain-text password that ${why}, without echoing it`, async () => {
        assert.deepEqual(await problems(ext(md5Line, `password: "${password}"`)), [
          `extensions/a.yaml:4:15: extensions[0].password: password ${why}; use at least 12 characters mixing letters and digits, or better a secret on the host`,
        ]);
      });
    }
    it('accepts a strong plain-text password with a warning that it is in git', async () => {
      const result = await load(ext(md5Line, 'password: "vT9-kq2Lm-8xZr"'));
      assert.deepEqual(result.issues.map(formatIssue), [
        'extensions/a.yaml:4:15: warning: extensions[0].password: a plain-text password is in git; prefer `secret:` (a file on the host) or `md5:`',
      ]);
      assert.ok(result.state, 'a warning does not block loading');
    });
    it('never echoes a password that fails the schema', async () => {
      const long = 'x'.repeat(200);
      const out = await problems(ext(md5Line, `password: "${long}"`));
      assert.deepEqual(out, ['extensions/a.yaml:4:15: extensions[0].password: expected at most 128 characters']);
    });
  });

  describe('YAML', () => {
    it('reports a syntax error with its line and column', async () => {
      assert.deepEqual(await problems(ext('    name: Alice Example', '    name: [Alice')), [
        'extensions/a.yaml:4:5: YAML syntax: Flow sequence in block collection must be sufficiently indented and end with a ]',
      ]);
    });
    it('refuses a key given twice in one map', async () => {
      assert.deepEqual(await problems(ext('    name: Alice Example', '    name: Alice Example\n    name: Bob')), [
        'extensions/a.yaml:4:5: YAML syntax: Map keys must be unique',
      ]);
    });
    it('explains that a feature code starting with * must be quoted', async () => {
      assert.deepEqual(await problems(site('internal: {}', 'internal: {}\n  feature_codes: { voicemail: *97 }')), [
        'pbx.yaml:18:31: YAML syntax: Unresolved alias (the anchor must be set before the alias): 97; a value starting with "*" or "&" must be quoted, e.g. "*97"',
      ]);
    });
    it('refuses a YAML alias bomb instead of expanding it', async () => {
      const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
      for (let i = 1; i < 9; i++) {
        const prev = String.fromCharCode(96 + i);
        const name = String.fromCharCode(97 + i);
        levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
      }
      assert.deepEqual(await problems({ 'pbx.yaml': BASE_PBX, 'extensions/bomb.yaml': levels.join('\n') + '\n' }), [
        'extensions/bomb.yaml: YAML aliases expand too far (more than 100 alias uses); write the values out instead',
      ]);
    });
    it('refuses an empty extensions file and an empty pbx.yaml with what is missing', async () => {
      assert.deepEqual(await problems({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': '# nothing yet\n' }), [
        'extensions/a.yaml: is empty; expected a list under `extensions:`',
      ]);
      assert.deepEqual(await problems({ 'pbx.yaml': '' }), [
        'pbx.yaml:1:1: version: is missing: expected version: 1',
        'pbx.yaml:1:1: network: is missing: expected a map',
        'pbx.yaml:1:1: rtp: is missing: expected a map',
        'pbx.yaml:1:1: codec_profiles: is missing: expected a map of codec profiles',
        'pbx.yaml:1:1: dialplan: is missing: expected a map',
      ]);
    });
  });

  describe('reading the repo', () => {
    it('refuses a symlink that points outside the repo without reading it', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/.keep': '' });
      await symlink('/etc/passwd', path.join(dir, 'extensions', 'passwd.yaml'));
      const result = loadDesiredState(await readConfigRepo(dir));
      assert.deepEqual(result.issues.map(formatIssue), [
        'extensions/passwd.yaml: is a symbolic link pointing outside the config repo; only files inside the repo are read',
      ]);
    });
    it('follows a symlink that stays inside the repo', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'shared/a.yaml': BASE_EXTENSIONS, 'extensions/.keep': '' });
      await symlink('../shared/a.yaml', path.join(dir, 'extensions', 'a.yaml'));
      const result = loadDesiredState(await readConfigRepo(dir));
      assert.deepEqual(result.issues, []);
      assert.equal(result.state!.extensions.length, 1);
    });
    it('refuses a file over the size limit without parsing it', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX });
      await makeDirAndWrite(dir, 'extensions/huge.yaml', Buffer.alloc(MAX_FILE_BYTES + 1, 0x20));
      assert.deepEqual(loadDesiredState(await readConfigRepo(dir)).issues.map(formatIssue), [
        `extensions/huge.yaml: is ${MAX_FILE_BYTES + 1} bytes, over the limit of ${MAX_FILE_BYTES} bytes; split it into several files under extensions/`,
      ]);
    });
    it('refuses a binary file and a file that is not UTF-8', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX });
      await makeDirAndWrite(dir, 'extensions/a.yaml', Buffer.from([0x65, 0x78, 0x00, 0x01]));
      await makeDirAndWrite(dir, 'extensions/b.yaml', Buffer.from('extensions: [{ name: "Ren\xe9" }]', 'latin1'));
      assert.deepEqual(loadDesiredState(await readConfigRepo(dir)).issues.map(formatIssue), [
        'extensions/a.yaml: is a binary file (it contains NUL bytes); expected UTF-8 YAML text',
        'extensions/b.yaml: is not valid UTF-8 text; expected UTF-8 YAML',
      ]);
    });
    it('refuses a file name with a line break in it', async () => {
      assert.deepEqual(await problems({ 'pbx.yaml': BASE_PBX, 'extensions/a\n[x].yaml': BASE_EXTENSIONS }), [
        '"extensions/a\\n[x].yaml": has control characters in its name; rename it',
      ]);
    });
    it('requires pbx.yaml and a single one of pbx.yaml / pbx.yml', async () => {
      assert.deepEqual(await problems({ 'extensions/a.yaml': BASE_EXTENSIONS }), [
        'pbx.yaml: is missing: every config repo needs a pbx.yaml at its root (see examples/config-repo)',
      ]);
      assert.deepEqual(await problems({ 'pbx.yaml': BASE_PBX, 'pbx.yml': BASE_PBX }), [
        'pbx.yml: both pbx.yaml and pbx.yml exist; keep only pbx.yaml',
      ]);
    });
    it('says a UTF-16 file is UTF-16 and to save it as UTF-8, with or without a byte order mark', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX });
      const text = BASE_EXTENSIONS;
      await makeDirAndWrite(dir, 'extensions/le.yaml', Buffer.from(`\ufeff${text}`, 'utf16le'));
      await makeDirAndWrite(dir, 'extensions/be.yaml', Buffer.from(`\ufeff${text}`, 'utf16le').swap16());
      await makeDirAndWrite(dir, 'extensions/nobom.yaml', Buffer.from(text, 'utf16le'));
      const save = 'text; save it as UTF-8 (in most editors: "Save with encoding", UTF-8)';
      assert.deepEqual(loadDesiredState(await readConfigRepo(dir)).issues.map(formatIssue), [
        `extensions/be.yaml: is UTF-16 (big-endian) ${save}`,
        `extensions/le.yaml: is UTF-16 (little-endian) ${save}`,
        `extensions/nobom.yaml: is UTF-16 (little-endian) ${save}`,
      ]);
    });

    it('reports lists or maps nested thousands of levels deep as nested too deep, in every YAML style', async () => {
      const tooDeep = 'YAML is nested too deep (more than 32 levels of lists and maps; the deepest field pbx-agent reads is 5 levels down)';
      const found = await problems({
        'pbx.yaml': BASE_PBX,
        'extensions/flow.yaml': `extensions: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`,
        'extensions/maps.yaml': `extensions: ${'{a: '.repeat(10_000)}1${'}'.repeat(10_000)}\n`,
        'extensions/block.yaml': `extensions:\n  ${'- '.repeat(10_000)}x\n`,
        'extensions/forty.yaml': `extensions: ${'['.repeat(40)}${']'.repeat(40)}\n`,
      });
      assert.deepEqual(found.map((line) => line.replace(/:\d+:\d+:/, ':')), [
        `extensions/block.yaml: ${tooDeep}`,
        `extensions/flow.yaml: ${tooDeep}`,
        `extensions/forty.yaml: ${tooDeep}`,
        `extensions/maps.yaml: ${tooDeep}`,
      ]);
    });

    it('follows a folder symlink that stays inside the repo, and reads its extensions', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'teams/sales/a.yaml': BASE_EXTENSIONS, 'extensions/.keep': '' });
      await symlink('../teams/sales', path.join(dir, 'extensions', 'sales'));
      const result = loadDesiredState(await readConfigRepo(dir));
      assert.deepEqual(result.issues.map(formatIssue), []);
      assert.deepEqual(result.state!.extensions.map((e) => [e.number, e.source.file]), [['1001', 'extensions/sales/a.yaml']]);
    });

    it('follows an extensions folder that is itself a symlink inside the repo', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'config/phones/a.yaml': BASE_EXTENSIONS });
      await symlink('config/phones', path.join(dir, 'extensions'));
      const result = loadDesiredState(await readConfigRepo(dir));
      assert.deepEqual(result.issues.map(formatIssue), []);
      assert.equal(result.state!.extensions.length, 1);
    });

    it('never skips a folder symlink silently: outside the repo, to nothing, or a loop is an error; a second way to read files is a warning', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'teams/sales/a.yaml': BASE_EXTENSIONS, 'extensions/.keep': '' });
      const outside = await makeRepo({ 'b.yaml': BASE_EXTENSIONS });
      await symlink('../teams/sales', path.join(dir, 'extensions', 'a-sales'));
      await symlink('../teams/sales', path.join(dir, 'extensions', 'b-sales-again'));
      await symlink(outside, path.join(dir, 'extensions', 'elsewhere'));
      await symlink('../teams/renamed', path.join(dir, 'extensions', 'gone'));
      await symlink('..', path.join(dir, 'extensions', 'loop'));
      assert.deepEqual(loadDesiredState(await readConfigRepo(dir)).issues.map(formatIssue), [
        'extensions/b-sales-again: warning: is a symbolic link to teams/sales, which is read already; the link is not followed (its files would be read twice)',
        'extensions/elsewhere: is a symbolic link pointing outside the config repo; only files inside the repo are read: copy the folder into the repo',
        'extensions/gone: is a symbolic link to something that does not exist; its extensions are not read: fix or remove the link',
        'extensions/loop: is a symbolic link to the root of the repo, a folder that contains it: a loop; remove the link',
      ]);
    });

    it('warns about YAML files that will not be read, and asks "did you mean extensions/?" for a near miss', async () => {
      const found = await problems({
        'pbx.yaml': BASE_PBX,
        'extentions/a.yaml': BASE_EXTENSIONS,
        'Extensions/b.yml': BASE_EXTENSIONS,
        'extension/c/d.yaml': BASE_EXTENSIONS,
        'office.yaml': BASE_EXTENSIONS,
        'teams/x.yaml': BASE_EXTENSIONS,
        'teams/y.yaml': BASE_EXTENSIONS,
        // Tooling, not config: never mentioned.
        '.github/workflows/validate.yml': 'on: push',
        'node_modules/pkg/x.yaml': 'a: 1',
        'docs/notes.md': '# notes',
      });
      const reads = '(pbx-agent reads only pbx.yaml and extensions/**/*.yaml)';
      assert.deepEqual(found, [
        `Extensions/: warning: holds 1 YAML file that is not read ${reads}; did you mean extensions/?`,
        `extension/: warning: holds 1 YAML file that is not read ${reads}; did you mean extensions/?`,
        `extentions/: warning: holds 1 YAML file that is not read ${reads}; did you mean extensions/?`,
        `office.yaml: warning: is not read ${reads}; if it lists extensions, move it into extensions/`,
        'pbx.yaml: warning: no extension is defined, so Asterisk would have no phones; extensions are read from extensions/**/*.yaml and from `extensions:` in this file',
        `teams/: warning: holds 2 YAML files that are not read ${reads}`,
      ]);
    });

    it('warns that Asterisk would have no phones when every extension is disabled', async () => {
      assert.deepEqual(await problems(ext(md5Line, `${md5Line}\n    enabled: false`)), [
        'pbx.yaml: warning: all 1 extension is disabled (enabled: false), so Asterisk would have no phones',
      ]);
    });

    it('reads extension files in nested folders, ignoring hidden ones and other file types', async () => {
      const result = await load({
        'pbx.yaml': BASE_PBX,
        'extensions/sales/emea.yaml': BASE_EXTENSIONS,
        'extensions/.hidden/x.yaml': 'not: [valid',
        'extensions/README.md': '# notes',
      });
      assert.deepEqual(result.issues, []);
      assert.equal(result.state!.extensions[0]!.source.file, 'extensions/sales/emea.yaml');
    });
  });
});

async function makeDirAndWrite(dir: string, rel: string, data: Buffer) {
  await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
  await writeFile(path.join(dir, rel), data);
}

describe('load: a changed extensions file, after a load of it', () => {
  const site: RepoSnapshot['site'] = { path: 'pbx.yaml', text: BASE_PBX };
  const snapshot = (text: string): RepoSnapshot => ({ root: '/repo', site, extensionFiles: [{ path: 'extensions/a.yaml', text }], issues: [] });
  /** A load with no extensions file: nothing of an earlier load is kept for the next one. */
  const forget = () => loadDesiredState({ root: '/repo', site, extensionFiles: [], issues: [] });
  const md5 = (c: string) => c.repeat(32);
  const entry = (n: string, extra = '') => `  - number: "${n}"\n    name: User ${n}\n    md5: ${md5('abcdef'[Number(n) % 6]!)}\n${extra}`;
  const plain = `# sales\nextensions:\n${entry('1001')}\n${entry('1002', '    voicemail:\n      email: b@example.com\n')}\n${entry('1003')}\n`;
  /** js-yaml reads this name as "User - 1002": the line that looks like an entry is not one. */
  const quoted = plain.replace('name: User 1002', 'name: "User\n  - 1002"');
  /** [what, before, after, whether unchanged entries are taken from the load before]. */
  const cases: Array<[string, string, string, boolean]> = [
    ['one entry renamed', plain, plain.replace('User 1002', 'Someone Else'), true],
    ['an entry added at the end', plain, `${plain}${entry('1004')}`, true],
    ['an entry removed from the middle', plain, plain.replace(`${entry('1002', '    voicemail:\n      email: b@example.com\n')}\n`, ''), true],
    ['two entries swapped', plain, `extensions:\n${entry('1003')}\n${entry('1001')}\n`, true],
    ['a nested field changed', plain, plain.replace('b@example.com', 'c@example.com'), true],
    ['flow maps, one changed', `extensions:\n  - { number: "1001", md5: ${md5('a')} }\n  - { number: "1002", md5: ${md5('b')} }\n`, `extensions:\n  - { number: "1001", md5: ${md5('a')} }\n  - { number: "1002", md5: ${md5('c')} }\n`, true],
    ['entries not indented under the key', `extensions:\n- number: "1001"\n  md5: ${md5('a')}\n- number: "1002"\n  md5: ${md5('b')}\n`, `extensions:\n- number: "1001"\n  md5: ${md5('a')}\n- number: "1002"\n  md5: ${md5('c')}\n`, true],
    ['a comment at the first column between entries', plain, plain.replace(`\n${entry('1003')}`, `# the new ones\n${entry('1003')}`).replace('User 1001', 'Alice'), true],
    ['an entry whose fields start on the next line', plain, `${plain}  -\n    number: "1004"\n    md5: ${md5('d')}\n`, true],
    ['a quoted name running on to a line that looks like an entry', plain, quoted, false],
    ['another change to a file with such a name', quoted, quoted.replace('User 1001', 'Alice'), false],
    ['an entry made invalid', plain, plain.replace(`md5: ${md5('abcdef'[1002 % 6]!)}`, 'md5: nothex'), false],
    ['a number that only the careful parser keeps', plain, plain.replace('number: "1002"', 'number: 0102'), false],
    ['an anchor added', plain, plain.replace('name: User 1003', 'name: &n User 1003'), false],
    ['an entry written twice', plain, `${plain}${entry('1001')}`, true],
    ['another key next to extensions', plain, `${plain}x-notes: hello\n`, false],
    ['an unindented line that is not a comment', plain, plain.replace('\n  - number: "1003"', '\nbad\n  - number: "1003"'), false],
  ];

  for (const [what, before, after, reuses] of cases) {
    it(`loads it exactly as a first load would: ${what}`, () => {
      forget();
      const fresh = loadDesiredState(snapshot(after));
      forget();
      loadDesiredState(snapshot(before));
      const again = loadDesiredState(snapshot(after));
      assert.deepEqual(again.state, fresh.state);
      assert.deepEqual(again.issues.map(formatIssue), fresh.issues.map(formatIssue));
      assert.deepEqual(again.summary, fresh.summary);
      for (const ext of fresh.state?.extensions ?? []) assert.deepEqual(again.locate(ext.source), fresh.locate(ext.source), ext.number);
      if (reuses) assert.ok(again.reused.entries > 0, `nothing reused: ${JSON.stringify(again.reused)}`);
      else assert.equal(again.reused.entries, 0);
    });
  }

  it('takes every unchanged entry from the load before and parses only the changed one', () => {
    forget();
    loadDesiredState(snapshot(plain));
    const again = loadDesiredState(snapshot(plain.replace('User 1002', 'Someone Else')));
    assert.deepEqual(again.reused, { files: 0, entries: 2 });
    assert.deepEqual(loadDesiredState(snapshot(plain.replace('User 1002', 'Someone Else'))).reused, { files: 1, entries: 0 });
  });
});
