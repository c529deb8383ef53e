/**
 * Nothing from YAML can inject Asterisk configuration: each attempt below is a real one (a line
 * break opening a section, a `;` comment, `#include`/`#exec`, control characters) in every field
 * that reaches a rendered file, and each is refused with its exact location.
 */
import assert from 'node:assert/strict';
import { formatIssue, loadDesiredState, readConfigRepo } from '../agent/load/index.js';
import { ConfText, UnsafeConfigValueError } from '../agent/render/conf-text.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, makeRepo, removeTempRepos } from './support/config-repo.js';

const ext = (from: string, to: string) => ({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': edit(BASE_EXTENSIONS, from, to) });
const site = (from: string, to: string) => ({ 'pbx.yaml': edit(BASE_PBX, from, to), 'extensions/a.yaml': BASE_EXTENSIONS });
const NAME_RULE = 'expected a name of letters, digits, "-" and "_" (at most 40, starting with a letter or digit)';
const DISPLAY_RULE =
  "expected a display name of letters, digits, spaces and . ' _ ( ) & / + @ - (no quotes, <, >, ;, commas, brackets or control characters)";

const attempts: Array<[string, Record<string, string>, string]> = [
  [
    'a display name with a line break opening a section',
    ext('name: Alice Example', 'name: "Alice\\n[evil]"'),
    `extensions/a.yaml:3:11: extensions[0].name: ${DISPLAY_RULE}, found "Alice\\n[evil]"`,
  ],
  [
    'a display name with a ; comment',
    ext('name: Alice Example', 'name: "Alice ; x"'),
    `extensions/a.yaml:3:11: extensions[0].name: ${DISPLAY_RULE}, found "Alice ; x"`,
  ],
  [
    'a display name closing the callerid quotes',
    ext('name: Alice Example', `name: 'Al"ice'`),
    `extensions/a.yaml:3:11: extensions[0].name: ${DISPLAY_RULE}, found "Al\\"ice"`,
  ],
  [
    'a display name with a control character',
    ext('name: Alice Example', 'name: "Alice\\u0007"'),
    `extensions/a.yaml:3:11: extensions[0].name: ${DISPLAY_RULE}, found "Alice\\u0007"`,
  ],
  [
    'an extension number with a line break and a section',
    ext('"1001"', '"1001\\n[x]"'),
    'extensions/a.yaml:2:13: extensions[0].number: expected an extension number of 2 to 12 digits, e.g. "1001", found "1001\\n[x]"',
  ],
  [
    'a context with an #include on the next line',
    ext('    md5:', '    context: "internal\\n#include /etc/shadow"\n    md5:'),
    `extensions/a.yaml:4:14: extensions[0].context: ${NAME_RULE}, found "internal\\n#include /etc/shadow"`,
  ],
  [
    'a codec profile name closing a section header',
    ext('    md5:', '    codec_profile: "voice]"\n    md5:'),
    `extensions/a.yaml:4:20: extensions[0].codec_profile: ${NAME_RULE}, found "voice]"`,
  ],
  [
    'a local_net carrying a second option',
    site('[172.31.0.0/16]', '["172.31.0.0/16\\nexternal_media_address=198.51.100.1"]'),
    'pbx.yaml:4:15: network.local_net[0]: expected an IPv4 network in CIDR form such as 172.31.0.0/16, found "172.31.0.0/16\\nexternal_media_address=198.51.100.1"',
  ],
  [
    'an external address with a ; tail',
    site('external_address: 203.0.113.10', 'external_address: "203.0.113.10;x"'),
    'pbx.yaml:3:21: network.external_address: expected an IPv4 address such as 203.0.113.10, found "203.0.113.10;x"',
  ],
  [
    'a dialplan include followed by #exec',
    site('internal: {}', 'internal: { includes: ["outbound\\n#exec /bin/sh"] }'),
    `pbx.yaml:17:28: dialplan.contexts.internal.includes[0]: ${NAME_RULE}, found "outbound\\n#exec /bin/sh"`,
  ],
  [
    'a voicemail e-mail with a section after it',
    ext('    md5:', '    voicemail: { email: "a@b.com\\n[x]" }\n    md5:'),
    'extensions/a.yaml:4:25: extensions[0].voicemail.email: expected an e-mail address such as alice@example.com, found "a@b.com\\n[x]"',
  ],
  [
    'a secret name walking out of the secrets directory',
    ext('md5: 0123456789abcdef0123456789abcdef', 'secret: ../../etc/shadow'),
    `extensions/a.yaml:4:13: extensions[0].secret: ${NAME_RULE}, found "../../etc/shadow"`,
  ],
  [
    'a TLS certificate path with an #include after it',
    site(
      'udp: { port: 5060 }',
      'udp: { port: 5060 }\n    tls: { port: 5061, cert_file: "/etc/x\\n#include y", priv_key_file: /etc/k.pem }',
    ),
    'pbx.yaml:7:35: network.transports.tls.cert_file: expected an absolute file path of letters, digits, ".", "_", "-" and "/", found "/etc/x\\n#include y"',
  ],
  [
    'a STUN server with a section after it',
    site('port_end: 20000', 'port_end: 20000\n  stun_server: "stun.example.org\\n[general]"'),
    'pbx.yaml:10:16: rtp.stun_server: expected a host name or IPv4 address with an optional port, e.g. stun.example.org:3478, found "stun.example.org\\n[general]"',
  ],
  [
    'a feature code with a trailing line break',
    site('internal: {}', 'internal: {}\n  feature_codes: { voicemail: "*97\\n" }'),
    'pbx.yaml:18:31: dialplan.feature_codes.voicemail: expected a feature code such as "*97": a "*" and 1 to 6 digits, or 2 to 8 digits, found "*97\\n"',
  ],
  [
    'a YAML key that looks like an option',
    ext('    md5:', '    "type=aor\\n[x]": 1\n    md5:'),
    'extensions/a.yaml:4:5: extensions[0]["type=aor\\n[x]"]: unknown field "type=aor\\n[x]"; expected one of: number, name, secret, md5, password, enabled, voicemail, context, codec_profile, max_contacts, ring_seconds, qualify_seconds',
  ],
  [
    'a codec profile key with a line break',
    site('voice: { audio: [opus, ulaw] }', 'voice: { audio: [opus, ulaw] }\n  "v\\n[x]": { audio: [ulaw] }'),
    'pbx.yaml:12:3: codec_profiles["v\\n[x]"]: "v\\n[x]" is not a valid name: ' + NAME_RULE,
  ],
  [
    'a context key with #include',
    site('internal: {}', 'internal: {}\n    "x\\n#include /etc/shadow": {}'),
    'pbx.yaml:18:5: dialplan.contexts["x\\n#include /etc/shadow"]: "x\\n#include /etc/shadow" is not a valid name: ' + NAME_RULE,
  ],
  [
    'a password with a line break (it would break the credential line)',
    ext('md5: 0123456789abcdef0123456789abcdef', 'password: "Tr0ub4dor&3x\\nq"'),
    'extensions/a.yaml:4:15: extensions[0].password: password contains control characters or line breaks; use at least 12 characters mixing letters and digits, or better a secret on the host',
  ],
];

describe('injection: nothing from YAML can inject Asterisk configuration', () => {
  after(removeTempRepos);

  for (const [what, files, expected] of attempts) {
    it(`refuses ${what}`, async () => {
      const result = loadDesiredState(await readConfigRepo(await makeRepo(files)));
      assert.deepEqual(result.issues.map(formatIssue), [expected]);
      assert.equal(result.state, undefined, 'nothing may be rendered from an invalid repo');
    });
  }

  describe('the config writer refuses unsafe text even if a schema rule were missing', () => {
    const unsafe = ['a\nb', 'a\rb', 'x ; y', '[section]', '#include /etc/shadow', '  #exec /bin/sh', 'nul\u0000', 'del\u007f'];
    for (const value of unsafe) {
      it(`throws on the value ${JSON.stringify(value)}`, () => {
        assert.throws(() => new ConfText().section('s').set('callerid', value), UnsafeConfigValueError);
        assert.throws(() => new ConfText().section('s').arrow('exten', value), UnsafeConfigValueError);
      });
    }
    it('throws on unsafe section names, option names and comments', () => {
      assert.throws(() => new ConfText().section('a]\n[b'), UnsafeConfigValueError);
      assert.throws(() => new ConfText().section('s').set('type=aor\nx', 'y'), UnsafeConfigValueError);
      assert.throws(() => new ConfText().comment('x\n[y]'), UnsafeConfigValueError);
    });
    it('writes ordinary values unchanged', () => {
      assert.equal(
        new ConfText().section('1001').set('callerid', '"Alice" <1001>').arrow('exten', '1001,1,Dial(${x})').toString(),
        '[1001]\ncallerid="Alice" <1001>\nexten => 1001,1,Dial(${x})\n',
      );
    });
  });
});
