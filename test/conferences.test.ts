/**
 * Conference rooms (app_confbridge) from the config repo: validation, PINs from the host's secret
 * files, rendering, what plan shows, and a reconcile against the loopback Asterisk that reads the
 * profiles back, rolls back a file Asterisk refuses and verifies a PIN without showing it.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { compareManagedFile } from '../agent/drift/files.js';
import { formatIssue, loadDesiredState, readConfigRepo } from '../agent/load/index.js';
import { renderConfigRepo } from '../agent/pipeline.js';
import { fileDiff, planChanges } from '../agent/plan/index.js';
import { reconcile } from '../agent/reconcile.js';
import type { RenderedFile } from '../agent/render/index.js';
import { DirectorySecretStore, type HostFacts } from '../agent/resolve/index.js';
import { verifyLiveState } from '../agent/verify/index.js';
import { amiControl } from '../agent/asterisk/control.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, extensionsYaml, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

/** BASE_PBX ends at line 17; the room's `- number:` is line 19. */
const room = (fields: string) => `${BASE_PBX}conferences:\n  - number: "800"\n    max_members: 10\n${fields}`;

async function problems(files: Record<string, string>): Promise<string[]> {
  return loadDesiredState(await readConfigRepo(await makeRepo(files))).issues.map(formatIssue);
}

/** A secrets directory as the host keeps it: one file per secret, mode 600. */
async function secretsDir(secrets: Record<string, string>): Promise<string> {
  const dir = await tempDir('pbx-agent-secrets-');
  for (const [name, value] of Object.entries(secrets)) {
    await writeFile(path.join(dir, name), `${value}\n`);
    await chmod(path.join(dir, name), 0o600);
  }
  return dir;
}

function host(dir = '/nonexistent-secrets-dir'): HostFacts {
  return { secrets: new DirectorySecretStore(dir), elasticIp: async () => ({ problem: 'not on EC2' }) };
}

async function render(files: Record<string, string>, secrets: Record<string, string> = {}, revision = 'r1') {
  return renderConfigRepo(await makeRepo(files), host(await secretsDir(secrets)), revision);
}

function body(files: readonly RenderedFile[] | undefined, rel: string): string {
  const f = files?.find((x) => x.path === rel);
  assert.ok(f, `${rel} was not rendered`);
  return f.body;
}

describe('conference rooms', () => {
  after(removeTempRepos);

  describe('validation', () => {
    it('refuses a PIN written in the YAML, in both spellings, and never repeats the digits', async () => {
      for (const pin of ['pin: 4711', 'pin: "4711"', 'moderator_pin: 4711']) {
        const out = await problems({ 'pbx.yaml': room(`    ${pin}\n`), 'extensions/a.yaml': BASE_EXTENSIONS });
        const field = pin.split(':')[0];
        assert.deepEqual(out, [
          `pbx.yaml:21:${field === 'pin' ? 10 : 20}: conferences[0].${field}: a PIN written here would be in git for everyone who can read the config repo; ` +
            'put the digits in a file on the host, /etc/pbx-agent/secrets/NAME (mode 600), and write { secret: NAME }',
        ]);
      }
    });

    it('refuses a room number that an extension, a feature code or another room already dials, naming where', async () => {
      const out = await problems({
        'pbx.yaml': edit(room('  - number: "1001"\n    max_members: 4\n  - number: "800"\n    max_members: 4\n'), 'internal: {}\n', 'internal: {}\n  feature_codes: { voicemail: "800" }\n'),
        'extensions/a.yaml': BASE_EXTENSIONS,
      });
      assert.deepEqual(out, [
        'pbx.yaml:20:13: conferences[0].number: collides with the voicemail feature code (dialplan.feature_codes.voicemail); pick another number for the room or another feature code, found "800"',
        'pbx.yaml:22:13: conferences[1].number: collides with extension 1001 at extensions/a.yaml:2:13; a number dials one thing: give the room or the extension another number, found "1001"',
        'pbx.yaml:24:13: conferences[2].number: conference room 800 is defined twice; the other one is at pbx.yaml:20:13, found "800"',
        'pbx.yaml:24:13: conferences[2].number: collides with the voicemail feature code (dialplan.feature_codes.voicemail); pick another number for the room or another feature code, found "800"',
      ]);
    });

    it('refuses a collision with a disabled extension too: enabling it again would break the room', async () => {
      const out = await problems({
        'pbx.yaml': room(''),
        'extensions/a.yaml': extensionsYaml([{ number: '800', extra: 'enabled: false' }, '1001']),
      });
      assert.deepEqual(out, [
        'pbx.yaml:19:13: conferences[0].number: collides with extension 800 (disabled) at extensions/a.yaml:2:15; a number dials one thing: give the room or the extension another number, found "800"',
      ]);
    });

    it('refuses a video mode ConfBridge does not have', async () => {
      const out = await problems({ 'pbx.yaml': room('    video_mode: gallery\n'), 'extensions/a.yaml': BASE_EXTENSIONS });
      assert.deepEqual(out, [
        'pbx.yaml:21:17: conferences[0].video_mode: expected one of follow_talker, last_marked, first_marked, sfu, none, found "gallery"',
      ]);
    });

    it('refuses video settings that cannot work, whatever the phones', async () => {
      const cases: Array<[string, RegExp]> = [
        ['    video_mode: follow_talker\n', /^pbx\.yaml:21:17: conferences\[0\]\.video_mode: video_mode follow_talker needs video, but codec profile voice has none/],
        ['    codec_profile: video\n    video_mode: last_marked\n', /^pbx\.yaml:22:17: conferences\[0\]\.video_mode: last_marked shows the video of a marked participant, and without moderator_pin nobody joins marked/],
        ['    codec_profile: video\n    video_mode: sfu\n', /^pbx\.yaml:22:17: conferences\[0\]\.video_mode: sfu sends every participant's video as a stream of its own, but codec profile video allows max_video_streams 1/],
        ['    wait_marked: true\n', /^pbx\.yaml:21:5: conferences\[0\]\.wait_marked: waits for or ends with a moderator \(a marked participant\), but the room has no moderator_pin/],
        ['    end_marked: true\n', /^pbx\.yaml:21:5: conferences\[0\]\.end_marked: waits for or ends with a moderator/],
        ['    contexts: [lobby]\n', /^pbx\.yaml:21:16: conferences\[0\]\.contexts\[0\]: is not a context declared under dialplan\.contexts \(declared: internal\), found "lobby"$/],
        ['    codec_profile: hd\n', /^pbx\.yaml:21:20: conferences\[0\]\.codec_profile: is not a profile under codec_profiles \(defined: voice, video\), found "hd"$/],
        ['    pin: { secret: board }\n    moderator_pin: { secret: board }\n', /^pbx\.yaml:22:20: conferences\[0\]\.moderator_pin: names the same secret as pin \("board"\): every participant would join as moderator/],
        ['max_members: 1\n', /^pbx\.yaml:20:18: conferences\[0\]\.max_members: expected at least 2 participants/],
      ];
      for (const [fields, expected] of cases) {
        const pbx = fields.includes('max_members') ? room('').replace('max_members: 10\n', fields) : room(fields);
        const out = await problems({ 'pbx.yaml': pbx, 'extensions/a.yaml': BASE_EXTENSIONS });
        assert.equal(out.length, 1, `${fields}: ${out.join('\n')}`);
        assert.match(out[0]!, expected);
      }
    });

    it('warns, naming them, about phones that can dial a video room but will not see its video', async () => {
      const pbx = edit(
        room('    codec_profile: wide\n    video_mode: sfu\n'),
        'video: { audio: [opus], video: [h264, vp8] }\n',
        'video: { audio: [opus], video: [h264, vp8] }\n  wide: { audio: [opus], video: [h264], max_video_streams: 4 }\n  vp8first: { audio: [opus], video: [vp8] }\n',
      );
      const out = await problems({
        'pbx.yaml': pbx,
        'extensions/a.yaml': extensionsYaml([{ number: '1001', extra: 'codec_profile: video' }, { number: '1002', extra: 'codec_profile: vp8first' }, '1003']),
      });
      assert.deepEqual(out, [
        'pbx.yaml:23:5: warning: conferences[0].codec_profile: extensions 1002 can dial this room but prefer another video codec than its h264; ConfBridge does not transcode video, so participants see each other only when their phones settle on one codec',
        'pbx.yaml:24:17: warning: conferences[0].video_mode: extensions 1001, 1002 can dial this sfu room with max_video_streams below 2: they receive one participant\'s video at most, found "sfu"',
      ]);
    });

    it('defaults to follow_talker with a video profile, to no video without, and to every context', async () => {
      const pbx = edit(room('    codec_profile: video\n  - number: "801"\n    max_members: 3\n'), 'internal: {}\n', 'internal: {}\n    lobby: {}\n');
      const loaded = loadDesiredState(await readConfigRepo(await makeRepo({ 'pbx.yaml': pbx, 'extensions/a.yaml': BASE_EXTENSIONS })));
      assert.deepEqual(loaded.issues, []);
      assert.deepEqual(
        loaded.state!.conferences.map((c) => [c.number, c.videoMode, c.contexts]),
        [['800', 'follow_talker', ['internal', 'lobby']], ['801', 'none', ['internal', 'lobby']]],
      );
    });
  });

  describe('PINs come from the host', () => {
    const board = room('    pin: { secret: board-pin }\n    moderator_pin: { secret: board-host }\n');

    it('reads each PIN from its secret file and refuses a missing file at the field that names it', async () => {
      const out = await render({ 'pbx.yaml': board, 'extensions/a.yaml': BASE_EXTENSIONS }, { 'board-pin': '4711' });
      assert.equal(out.issues.length, 1);
      assert.match(formatIssue(out.issues[0]!), /^pbx\.yaml:22:20: conferences\[0\]\.moderator_pin: secret "board-host" \(the moderator PIN of conference room 800\): no secret file \S+\/board-host; create it \(mode 600/);
    });

    it('refuses a PIN that is not 4 to 12 digits, and one that equals the moderator PIN, without showing either', async () => {
      for (const [pin, host, expected] of [
        ['12a4', '9182', /^pbx\.yaml:21:10: conferences\[0\]\.pin: secret "board-pin" \(the PIN of conference room 800\) must hold 4 to 12 digits 0-9 on one line/],
        ['471', '9182', /must hold 4 to 12 digits/],
        ['4711', '4711', /^pbx\.yaml:22:20: conferences\[0\]\.moderator_pin: secrets "board-pin" and "board-host" of conference room 800 hold the same PIN/],
      ] as const) {
        const out = await render({ 'pbx.yaml': board, 'extensions/a.yaml': BASE_EXTENSIONS }, { 'board-pin': pin, 'board-host': host });
        assert.equal(out.issues.length, 1, out.issues.map(formatIssue).join('\n'));
        const text = formatIssue(out.issues[0]!);
        assert.match(text, expected);
        assert.ok(!text.includes(pin) && !text.includes(host), `a PIN in: ${text}`);
      }
    });
  });

  describe('rendering', () => {
    it('renders profiles with ConfBridge option names, and a dialplan that tells the moderator PIN from the room PIN', async () => {
      const pbx = edit(
        room('    name: Board\n    pin: { secret: board-pin }\n    moderator_pin: { secret: board-host }\n    wait_marked: true\n    end_marked: true\n    startmuted: true\n    contexts: [internal]\n'),
        'internal: {}\n',
        'internal: {}\n    lobby: {}\n',
      );
      const out = await render({ 'pbx.yaml': pbx, 'extensions/a.yaml': BASE_EXTENSIONS }, { 'board-pin': '4711', 'board-host': '9182' });
      assert.deepEqual(out.issues, []);
      assert.equal(
        body(out.files, 'pbx-agent/confbridge.conf'),
        [
          '; Room 800 "Board", at most 10 participants, audio only, PIN, moderator PIN',
          '[pbx-agent-conf-800]', 'type=bridge', 'max_members=10', 'video_mode=none', 'maximum_sample_rate=48000', '',
          '[pbx-agent-conf-800-member]', 'type=user', 'admin=no', 'marked=no', 'startmuted=yes', 'music_on_hold_when_empty=no', 'quiet=no',
          'announce_user_count=no', 'announce_join_leave=no', 'wait_marked=yes', 'end_marked=yes', 'pin=4711', '',
          '[pbx-agent-conf-800-moderator]', 'type=user', 'admin=yes', 'marked=yes', 'startmuted=no', 'music_on_hold_when_empty=no', 'quiet=no',
          'announce_user_count=no', 'announce_join_leave=no', 'wait_marked=no', 'end_marked=no', 'pin=9182', '',
        ].join('\n'),
      );
      const dialplan = body(out.files, 'pbx-agent/extensions.conf');
      // The PINs stay in confbridge.conf: the dialplan reads them with AST_CONFIG.
      assert.ok(!dialplan.includes('4711') && !dialplan.includes('9182'));
      assert.match(dialplan, /^same => n,GotoIf\(\$\["\$\{PBXAGENT_PIN\}" != "" & "\$\{PBXAGENT_PIN\}" = "\$\{AST_CONFIG\(confbridge\.conf,pbx-agent-conf-800-moderator,pin\)\}"\]\?moderator\)$/m);
      assert.match(dialplan, /^same => n\(join\),Set\(CONFBRIDGE\(user,pin\)=\)\nsame => n,ConfBridge\(800,pbx-agent-conf-800\)$/m);
      // Only the contexts listed reach the room.
      assert.match(dialplan, /^\[internal\]\ninclude => pbx-agent-extensions\ninclude => pbx-agent-conf-800$/m);
      assert.match(dialplan, /^\[lobby\]\ninclude => pbx-agent-extensions\n?$/m);
    });

    it('lets ConfBridge ask for the PIN itself when there is no moderator PIN, and caps mixing at the room codecs', async () => {
      const pbx = edit(room('    pin: { secret: room-pin }\n'), 'voice: { audio: [opus, ulaw] }', 'voice: { audio: [g722, ulaw] }');
      const out = await render({ 'pbx.yaml': pbx, 'extensions/a.yaml': BASE_EXTENSIONS }, { 'room-pin': '246810' });
      assert.deepEqual(out.issues, []);
      assert.match(body(out.files, 'pbx-agent/extensions.conf'), /^exten => 800,1,ConfBridge\(800,pbx-agent-conf-800,pbx-agent-conf-800-member\)\nsame => n,Hangup\(\)$/m);
      const conf = body(out.files, 'pbx-agent/confbridge.conf');
      assert.match(conf, /^maximum_sample_rate=16000$/m);
      assert.match(conf, /^pin=246810$/m);
      assert.doesNotMatch(conf, /moderator/);
    });
  });

  describe('plan and diffs', () => {
    it('names the rooms a change adds, changes and removes, and redacts PINs in diffs and drift', async () => {
      const two = room('    pin: { secret: room-pin }\n  - number: "801"\n    max_members: 4\n');
      const secrets = { 'room-pin': '4711' };
      const before = await render({ 'pbx.yaml': two, 'extensions/a.yaml': BASE_EXTENSIONS }, secrets, 'r1');
      const onDisk = new Map(before.files!.map((f) => [f.path, f.text]));

      // 800 gets another PIN, 801 is dialled from another context only, 802 is new, nothing is removed.
      const next = edit(
        room('    pin: { secret: room-pin }\n  - number: "801"\n    max_members: 4\n    contexts: [lobby]\n  - number: "802"\n    max_members: 4\n'),
        'internal: {}\n',
        'internal: {}\n    lobby: {}\n',
      );
      const after = await render({ 'pbx.yaml': next, 'extensions/a.yaml': BASE_EXTENSIONS }, { 'room-pin': '9999' }, 'r2');
      const plan = planChanges(after.files!, onDisk);
      assert.deepEqual(plan.conferences, { added: ['802'], changed: ['800', '801'], removed: [] });
      assert.deepEqual(plan.reloads, ['app_confbridge', 'pbx_config']);
      const change = plan.files.find((f) => f.path === 'pbx-agent/confbridge.conf')!;
      const diff = fileDiff(change, onDisk.get(change.path));
      assert.match(diff, /^-pin=<redacted [0-9a-f]{8}>$/m);
      assert.match(diff, /^\+pin=<redacted [0-9a-f]{8}>$/m);
      assert.ok(!diff.includes('4711') && !diff.includes('9999'), diff);

      const removed = planChanges((await render({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS }, {}, 'r3')).files!, onDisk);
      assert.deepEqual(removed.conferences, { added: [], changed: [], removed: ['800', '801'] });

      const handEdit = onDisk.get('pbx-agent/confbridge.conf')!.replace('pin=4711', 'pin=1234');
      const drift = compareManagedFile('pbx-agent/confbridge.conf', onDisk.get('pbx-agent/confbridge.conf'), handEdit)!;
      assert.equal(drift.kind, 'modified');
      assert.match(drift.diff, /^\+pin=<redacted [0-9a-f]{8}>$/m);
      assert.ok(!drift.diff.includes('4711') && !drift.diff.includes('1234'), drift.diff);
    });
  });

  describe('applied to the loopback Asterisk', () => {
    let pbx: PbxHost;
    afterEach(async () => {
      await pbx?.stop();
    });

    async function secret(name: string, value: string): Promise<void> {
      const dir = path.join(pbx.root, 'etc/pbx-agent/secrets');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, name), `${value}\n`);
      await chmod(path.join(dir, name), 0o600);
    }
    const repo = (yaml: string) => makeRepo({ 'pbx.yaml': yaml, 'extensions/a.yaml': extensionsYaml(['1001', '1002']) });
    const commands = () =>
      pbx.asterisk
        .actionsReceived()
        .filter((a) => a.action === 'Command')
        .map((a) => a.headers.find(([k]) => k === 'Command')![1]);

    it('reloads app_confbridge and reads every new profile back, the PIN by fingerprint only', async () => {
      pbx = await startPbxHost();
      await secret('board-pin', '4711');
      await secret('board-host', '9182');
      const out = await reconcile(pbx.deps(), { dir: await repo(room('    codec_profile: video\n    pin: { secret: board-pin }\n    moderator_pin: { secret: board-host }\n')), revision: 'r1' });
      assert.equal(out.status, 'applied', out.error);
      assert.ok(out.reloads.includes('app_confbridge'));
      assert.equal(pbx.asterisk.reloadCount('app_confbridge'), 1);
      assert.deepEqual(pbx.asterisk.liveState().confbridge, {
        bridges: ['default_bridge', 'pbx-agent-conf-800'],
        users: ['default_user', 'pbx-agent-conf-800-member', 'pbx-agent-conf-800-moderator'],
      });
      assert.deepEqual(pbx.asterisk.liveState().dialplan['pbx-agent-conf-800'], ['800']);
      const asked = commands();
      for (const c of ['confbridge show profile bridge pbx-agent-conf-800', 'confbridge show profile user pbx-agent-conf-800-member', 'confbridge show profile user pbx-agent-conf-800-moderator', 'dialplan show 800@pbx-agent-conf-800']) {
        assert.ok(asked.includes(c), `${c} was not asked: ${asked.join('; ')}`);
      }
      assert.ok(!JSON.stringify(pbx.events).includes('4711'), 'a PIN reached the log');
    });

    it('reads back only the profiles a change touches, and proves a removed room gone', async () => {
      pbx = await startPbxHost();
      await secret('board-pin', '4711');
      const dir = await repo(room('    pin: { secret: board-pin }\n  - number: "801"\n    max_members: 4\n'));
      assert.equal((await reconcile(pbx.deps(), { dir, revision: 'r1' })).status, 'applied');
      await secret('board-pin', '5822');
      const seen = commands().length;
      const changed = await reconcile(pbx.deps(), { dir, revision: 'r2' });
      assert.equal(changed.status, 'applied', changed.error);
      assert.deepEqual(changed.reloads, ['app_confbridge']);
      assert.deepEqual(commands().slice(seen).filter((c) => c.startsWith('confbridge')), ['confbridge show profile user pbx-agent-conf-800-member']);

      const gone = await reconcile(pbx.deps(), { dir: await repo(room('    pin: { secret: board-pin }\n')), revision: 'r3' });
      assert.equal(gone.status, 'applied', gone.error);
      assert.deepEqual(pbx.asterisk.liveState().confbridge.bridges, ['default_bridge', 'pbx-agent-conf-800']);
      assert.ok(commands().includes('confbridge show profile bridge pbx-agent-conf-801'));
      assert.ok(commands().includes('dialplan show 801@pbx-agent-conf-801'));
    });

    it('rolls back a room Asterisk refuses: the Reload answers an error and the old profiles stay live', async () => {
      // An Asterisk without announce_user_count refuses the whole file on reload (aco: every
      // option must be known), as the recorded video_mode=gallery was refused.
      pbx = await startPbxHost({ unknownConfbridgeOptions: ['announce_user_count'] });
      const first = await reconcile(pbx.deps(), { dir: await repo(BASE_PBX), revision: 'r1' });
      assert.equal(first.status, 'applied', first.error);
      const confBefore = await readFile(path.join(pbx.configDir, 'pbx-agent/confbridge.conf'), 'utf8');
      const extensionsBefore = await readFile(path.join(pbx.configDir, 'pbx-agent/extensions.conf'), 'utf8');

      const out = await reconcile(pbx.deps(), { dir: await repo(room('')), revision: 'r2' });
      assert.equal(out.status, 'rolled_back');
      assert.match(out.error ?? '', /^reload of app_confbridge was refused: Reload of module 'app_confbridge' failed: An unknown error occurred$/);
      assert.equal(await readFile(path.join(pbx.configDir, 'pbx-agent/confbridge.conf'), 'utf8'), confBefore, 'last-known-good restored');
      assert.equal(await readFile(path.join(pbx.configDir, 'pbx-agent/extensions.conf'), 'utf8'), extensionsBefore);
      assert.deepEqual(pbx.asterisk.liveState().confbridge.bridges, ['default_bridge']);
      assert.equal(pbx.asterisk.liveState().dialplan['pbx-agent-conf-800'], undefined, 'the room never reached the dialplan');
      assert.equal(pbx.events.filter((e) => e.event === 'reconcile.rolled_back').length, 1);
    });

    it('finds a live PIN that differs from the rendered one, and says so without either PIN', async () => {
      pbx = await startPbxHost();
      await secret('board-pin', '4711');
      const dir = await repo(room('    pin: { secret: board-pin }\n'));
      assert.equal((await reconcile(pbx.deps(), { dir, revision: 'r1' })).status, 'applied');
      const rendered = await readFile(path.join(pbx.configDir, 'pbx-agent/confbridge.conf'), 'utf8');
      const otherPin = rendered.replace('pin=4711', 'pin=4712');
      const result = await verifyLiveState(amiControl(pbx.client), [{ module: 'app_confbridge', before: '', after: otherPin }], { detailLimit: 10 });
      assert.deepEqual(result.mismatches.filter((m) => m.field === 'PIN'), [
        { object: 'confbridge user profile pbx-agent-conf-800-member', field: 'PIN', expected: '(the rendered PIN)', actual: '(a different PIN)' },
      ]);
      const live = await pbx.client.command('confbridge show profile user pbx-agent-conf-800-member');
      assert.match(live.find((l) => l.startsWith('PIN:'))!, /^PIN: +redacted:[0-9a-f]{32}$/, 'the AMI adapter never hands the PIN out');
    });
  });
});
