/**
 * The product as a user installs it, end to end: a fresh Debian unstable host booted under its own
 * systemd (test/support/host-container.ts), the release tarball (`npm pack`) unpacked on it, and
 * bootstrap/bootstrap.sh run the way cloud-init runs user data (a clean environment, a plain PATH,
 * no HOME, no terminal). The bootstrap installs the packaged Asterisk with apt-get and Node.js from
 * the official build of each line it accepts (--node-dist), and the config repo comes from a git
 * host over ssh inside the container. IMDS and the EC2 API are loopback stand-ins; phones are sipp.
 *
 * Each Node.js line gets its own fresh host. What happened is also written, step by step, to
 * /var/tmp/pbx-agent-e2e/transcript-node<N>.txt.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { chownTree, E2eHost, ELASTIC_IP, ids, PASSWORD, PBX_YAML, PHONES_IP } from '../support/e2e-host.js';
import { preparedRootfs, WORK_ROOT, type Exec } from '../support/host-container.js';
import { BOOTSTRAP_NODE_MAJORS, nodeDist } from '../support/node-lines.js';
import { buildRelease } from '../support/release.js';

/** The room test needs one host: the bootstrap's default Node.js line. */
const CONFERENCE_NODE_MAJOR = 24;

/** The `skip`+1-th journal line of this event (matching `where`), waiting up to `timeoutMs`. */
async function waitForEvent(h: E2eHost, event: string, skip: number, timeoutMs: number, where: (l: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown> | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await h.journal()).filter((l) => l.event === event && where(l));
    if (found.length > skip) return found[skip];
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

describe('end to end: a fresh host booted with systemd, bootstrapped from the release as cloud-init would', function () {
  this.timeout(20 * 60_000);
  let rootfs: string;
  let release: string;

  before(async function () {
    this.timeout(60 * 60_000);
    rootfs = await preparedRootfs((m) => console.error(`      [e2e] ${m}`));
    release = await buildRelease(path.join(WORK_ROOT, 'release'));
  });

  describe('an operator\'s first contact: apt busy, universe missing, the deploy key not added yet', () => {
    let h: E2eHost;
    before(async function () {
      this.timeout(10 * 60_000);
      h = await E2eHost.start(rootfs, release, await nodeDist(BOOTSTRAP_NODE_MAJORS[BOOTSTRAP_NODE_MAJORS.length - 1]!));
    });
    after(async () => {
      await h?.stop();
    });

    it('stops at step 1 and says to enable universe when apt has no asterisk package', async () => {
      const empty = await h.c.sh(
        'mkdir -p /srv/e2e-apt-empty && : > /srv/e2e-apt-empty/Packages && cp /etc/apt/sources.list /srv/e2e/sources.list && ' +
          'echo "deb [trusted=yes] file:/srv/e2e-apt-empty ./" > /etc/apt/sources.list && apt-get update -q',
      );
      assert.equal(empty.code, 0, empty.stderr);
      const r = await h.bootstrap();
      await h.note('bootstrap without a universe component', r.stdout.trimEnd().split('\n').slice(-3).join('\n'));
      assert.equal(r.code, 1, r.stdout.slice(-3000));
      assert.match(r.stdout, /error: apt has no asterisk package: on Ubuntu it is in the universe component; enable it \(sudo add-apt-repository -y universe/);
      assert.match(r.lastLine, /^pbx-agent-bootstrap: FAILED at step '1\/12 packages/);
      const restored = await h.c.sh('cp /srv/e2e/sources.list /etc/apt/sources.list && apt-get update -q');
      assert.equal(restored.code, 0, restored.stderr);
    });

    it('waits for apt\'s package lists lock, says the deploy key is the next step, and `status` is UNHEALTHY until it is added', async () => {
      // The git host does not know the deploy key yet.
      await rm(h.c.at('/home/git/.ssh/authorized_keys'));
      // Another apt holds the package lists' lock (as cloud-init's or unattended-upgrades' can on a
      // fresh instance) until the bootstrap says it waits for it: apt locks with fcntl, and so does
      // python's lockf, on the same file.
      const holder = spawn('python3', ['-c', 'import fcntl,sys;f=open(sys.argv[1],"a");fcntl.lockf(f,fcntl.LOCK_EX);print("locked",flush=True);sys.stdin.read()', h.c.at('/var/lib/apt/lists/lock')], { stdio: ['pipe', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
      let sawWait = false;
      const r = await h.bootstrap((line) => {
        if (!sawWait && line.includes('the package lists are locked by another apt process; waiting')) {
          sawWait = true;
          holder.stdin!.end();
        }
      });
      holder.kill();
      await h.note('bootstrap with apt busy and the deploy key not added: last lines', r.stdout.trimEnd().split('\n').slice(-8).join('\n'));
      assert.ok(sawWait, `the bootstrap did not wait for the lock:\n${r.stdout.slice(0, 3000)}`);
      assert.equal(r.code, 3, r.stdout.slice(-4000));
      assert.match(r.stdout, /NEXT STEP: add it to the config repo on 127\.0\.0\.1 as a read-only deploy key/);
      assert.match(r.lastLine, /^pbx-agent-bootstrap: INCOMPLETE: the host is set up \(\d+ change\(s\)\) but the first sync failed \(exit \d+\)/);
      const status = await h.c.exec(['/usr/local/bin/pbx-agent', 'status']);
      await h.note('pbx-agent status before the deploy key is added', status.stdout);
      assert.equal(status.code, 3, status.stdout);
      assert.match(status.stdout, /^pbx-agent: UNHEALTHY$/m);
      assert.match(status.stdout, /problem: {3}nothing has been applied yet/);

      // The operator adds the key and asks for a sync.
      await copyFile(h.c.at('/srv/e2e/deploy_key.pub'), h.c.at('/home/git/.ssh/authorized_keys'));
      const gitUser = await ids(h.c.root, 'git');
      await chownTree(h.c.at('/home/git/.ssh'), gitUser.uid, gitUser.gid);
      assert.equal((await h.c.exec(['systemctl', 'reload', 'pbx-agent'])).code, 0);
      let after: Exec = status;
      for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
        after = await h.c.exec(['/usr/local/bin/pbx-agent', 'status']);
        if (after.code === 0) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      await h.note('pbx-agent status after the deploy key was added and `systemctl reload pbx-agent`', after.stdout);
      assert.equal(after.code, 0, after.stdout);
      assert.match(after.stdout, /^pbx-agent: healthy$/m);
    });
  });

  for (const major of BOOTSTRAP_NODE_MAJORS) {
    describe(`Node.js ${major}`, () => {
      let h: E2eHost;
      let firstOutput = '';

      before(async function () {
        this.timeout(10 * 60_000);
        h = await E2eHost.start(rootfs, release, await nodeDist(major));
      });
      after(async () => {
        await h?.stop();
      });

      it('bootstraps the host: the last line is OK, the unit is active, `pbx-agent status` says healthy', async () => {
        const r = await h.bootstrap();
        firstOutput = r.stdout;
        await h.note('bootstrap (first run): last lines', r.stdout.trimEnd().split('\n').slice(-14).join('\n'));
        assert.equal(r.code, 0, `bootstrap exit ${r.code}:\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
        assert.match(r.lastLine, /^pbx-agent-bootstrap: OK: Asterisk and pbx-agent are running and the first sync succeeded \(\d+ change\(s\)\)$/);
        assert.match(r.stdout, new RegExp(`change: install Node\\.js ${h.node.version.replace(/\./g, '\\.')} into /usr/local/lib/pbx-agent/node-v`));
        assert.match(r.stdout, /change: install packages: asterisk git/);
        assert.match(r.stdout, /== 4\/12 pbx-agent itself: \/srv\/e2e\/release\/package \(release\)/);

        assert.equal((await h.c.exec(['systemctl', 'is-active', 'pbx-agent'])).stdout.trim(), 'active');
        assert.equal((await h.c.exec(['systemctl', 'is-active', 'asterisk'])).stdout.trim(), 'active');
        const status = await h.c.exec(['/usr/local/bin/pbx-agent', 'status']);
        await h.note('/usr/local/bin/pbx-agent status', status.stdout + status.stderr);
        assert.equal(status.code, 0, status.stdout + status.stderr);
        assert.match(status.stdout, /^pbx-agent: healthy$/m);
        assert.match(status.stdout, /^ {2}daemon: {4}running \(pid \d+\)$/m);
        const version = await h.c.exec(['/usr/local/lib/pbx-agent/node/bin/node', '--version']);
        assert.equal(version.stdout.trim(), `v${h.node.version}`);
        const endpoints = await h.c.exec(['asterisk', '-rx', 'pjsip show endpoints']);
        assert.match(endpoints.stdout, /Endpoint: {2}2001/);
        assert.match(endpoints.stdout, /Endpoint: {2}2002/);
      });

      it('applies a pushed extension on the webhook: it registers with its password, a wrong one gets 401', async () => {
        const commit = await h.pushExtensions(['2001', '2002', '2003']);
        const t0 = performance.now();
        assert.equal(await h.webhook(commit), 202);
        let registeredMs = 0;
        let attempts = 0;
        let last: Exec | undefined;
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline) {
          attempts++;
          last = await h.sipp('register-200', '2003', PASSWORD('2003'), 5081);
          if (last.code === 0) {
            registeredMs = performance.now() - t0;
            break;
          }
        }
        assert.equal(last?.code, 0, `2003 never registered:\n${last?.stdout.slice(-1500)}\n${last?.stderr.slice(-1500)}`);
        const journal = await h.journal();
        assert.ok(journal.some((l) => l.event === 'webhook.push'), 'the webhook triggered the sync');
        const finished = journal.find((l) => l.event === 'reconcile.finished' && l.revision === commit.slice(0, 12));
        assert.equal(finished?.status, 'applied');
        // The bootstrap set up live objects: the new extension came as live objects, not by a reload.
        assert.ok(Number(finished?.liveObjectEdits) > 0, `not applied as live objects: ${JSON.stringify(finished)}`);
        assert.ok(!(finished?.reloads as string[]).includes('res_pjsip'), `res_pjsip was reloaded: ${JSON.stringify(finished)}`);
        const wrong = await h.sipp('register-401', '2003', 'Not-The-Password-123', 5082);
        assert.equal(wrong.code, 0, `a wrong password was not answered 401:\n${wrong.stdout.slice(-1500)}`);
        await h.note(
          'push -> registered',
          `commit ${commit.slice(0, 12)}: webhook POST -> 2003 answered 200 to REGISTER after ${registeredMs.toFixed(0)} ms (${attempts} sipp attempt(s)); agent run ${String(finished?.durationMs)} ms; a wrong password: 401`,
        );
      });

      it('connects a call between two extensions, with the Elastic IP in the SDP Asterisk sends', async () => {
        // The callee registers and waits; its out-of-call scenario answers and marks the call done.
        const calleeArgs = h.sippArgs('callee', '2002', PASSWORD('2002'), 5071, ['-oocsf', '/srv/e2e/sipp/callee-answer.xml']);
        calleeArgs[calleeArgs.indexOf('-timeout') + 1] = '40';
        const answering = h.c.exec(calleeArgs, { timeoutMs: 60_000 });
        const contact = new RegExp(`2002/sip:2002@${PHONES_IP.replace(/\./g, '\\.')}:5071 .* Avail`);
        let contacts = '';
        for (const deadline = Date.now() + 20_000; Date.now() < deadline && !contact.test(contacts); ) {
          await new Promise((r) => setTimeout(r, 200));
          contacts = (await h.c.exec(['asterisk', '-rx', 'pjsip show contacts'])).stdout;
        }
        assert.match(contacts, contact, 'the callee registered and answers qualify');
        const call = await h.sipp('caller', '2001', PASSWORD('2001'), 5072, ['-inf', '/srv/e2e/sipp/call-2002.csv']);
        let answered = false;
        for (const deadline = Date.now() + 10_000; Date.now() < deadline && !answered; ) {
          answered = (await h.c.exec(['test', '-e', '/srv/e2e/sipp/answered'])).code === 0;
          if (!answered) await new Promise((r) => setTimeout(r, 200));
        }
        await h.c.exec(['pkill', '-f', 'sipp.*callee.xml']);
        await answering;
        await h.note('call 2001 -> 2002', `caller exit ${call.code} (200 OK with c=IN IP4 ${ELASTIC_IP} in its SDP, ACK, BYE, 200); callee answered: ${answered}`);
        assert.equal(call.code, 0, `caller:\n${call.stdout.slice(-2000)}\n${call.stderr.slice(-1000)}\n${(await h.c.exec(['cat', '/srv/e2e/sipp/caller-2001-errors.log'])).stdout.slice(-3000)}`);
        assert.ok(answered, `the callee did not answer and see the BYE:\n${(await h.c.exec(['cat', '/srv/e2e/sipp/callee-2002-errors.log'])).stdout.slice(-3000)}`);
      });

      if (major === CONFERENCE_NODE_MAJOR) {
        it('puts two callers in a conference room: H.264 accepted for the one who offers it, audio only for the other', async () => {
          // The first sync loaded and verified the room's profiles (confbridge show profile ...).
          const first = (await h.journal()).find((l) => l.event === 'reconcile.finished' && l.status === 'applied');
          assert.ok((first?.reloads as string[] | undefined)?.includes('app_confbridge'), JSON.stringify(first));
          const profile = await h.c.exec(['asterisk', '-rx', 'confbridge show profile bridge pbx-agent-conf-800']);
          assert.match(profile.stdout, /^Video Mode: +follow_talker$/m, profile.stdout);
          assert.match(profile.stdout, /^Max Members: +4$/m);

          const inRoom = async (n: number): Promise<string> => {
            let list = '';
            for (const deadline = Date.now() + 10_000; Date.now() < deadline; ) {
              // Without an ethernet interface (the container has only loopback) asterisk -rx first says so.
              list = (await h.c.exec(['asterisk', '-rx', 'confbridge list 800'])).stdout.replace(/^No ethernet interface found.*\n/m, '');
              if ((list.match(/^PJSIP\//gm) ?? []).length >= n) break;
              await new Promise((r) => setTimeout(r, 200));
            }
            return list;
          };
          const messages = (who: string) => `/srv/e2e/sipp/conference-${who}-messages.log`;
          const join = (who: 'video' | 'audio', ext: string, port: number) => {
            const args = h.sippArgs(`conference-${who}`, ext, PASSWORD(ext), port, ['-inf', '/srv/e2e/sipp/room-800.csv', '-trace_msg', '-message_file', messages(who)]);
            args[args.indexOf('-timeout') + 1] = '30';
            return h.c.exec(args, { timeoutMs: 60_000 });
          };
          const withVideo = join('video', '2001', 5091);
          const one = await inRoom(1);
          const audioOnly = join('audio', '2002', 5092);
          const both = await inRoom(2);
          const [v, a] = await Promise.all([withVideo, audioOnly]);
          const answer = async (who: string) => {
            const log = (await h.c.exec(['cat', messages(who)])).stdout;
            const ok = log.split(/^-{10,}.*$/m).find((m) => /^SIP\/2\.0 200 OK/m.test(m) && /CSeq: 2 INVITE/.test(m)) ?? '';
            return ok.slice(ok.indexOf('v=0')).trim();
          };
          const [videoSdp, audioSdp] = [await answer('video'), await answer('audio')];
          await h.note(
            'two callers in conference room 800',
            [
              `2001 (offers audio and H.264 video): sipp exit ${v.code}; 2002 (offers audio only): sipp exit ${a.code}`,
              'confbridge list 800 with 2001 alone:', one.trimEnd(),
              'confbridge list 800 with both:', both.trimEnd(),
              "SDP of Asterisk's 200 OK to 2001:", videoSdp,
              "SDP of Asterisk's 200 OK to 2002:", audioSdp,
            ].join('\n'),
          );
          const errors = async (who: string, ext: string) => (await h.c.exec(['cat', `/srv/e2e/sipp/conference-${who}-${ext}-errors.log`])).stdout.slice(-3000);
          assert.equal(v.code, 0, `2001:\n${v.stdout.slice(-1500)}\n${await errors('video', '2001')}`);
          assert.equal(a.code, 0, `2002:\n${a.stdout.slice(-1500)}\n${await errors('audio', '2002')}`);
          assert.match(one, /^PJSIP\/2001-/m);
          assert.match(both, /^PJSIP\/2001-.*pbx-agent-conf-800-member +pbx-agent-conf-800 /m);
          assert.match(both, /^PJSIP\/2002-.*pbx-agent-conf-800-member +pbx-agent-conf-800 /m);
          assert.match(videoSdp, /^c=IN IP4 203\.0\.113\.10$/m);
          assert.match(videoSdp, /^m=video [1-9][0-9]* RTP\/AVP \d+$/m);
          assert.match(videoSdp, /^a=rtpmap:\d+ H264\/90000$/m);
          assert.match(audioSdp, /^m=audio [1-9][0-9]* RTP\/AVP 0$/m);
          assert.doesNotMatch(audioSdp, /^m=video/m);
        });

        it('tells a moderator PIN from the room PIN on the real Asterisk: one prompt, the matching profile, no second prompt', async () => {
          // The PINs on the host, as an operator puts them there (the bootstrap's secrets folder).
          for (const [name, pin] of [['board-pin', '47114711'], ['board-host', '91829182']]) {
            const r = await h.c.sh(`printf '%s\\n' ${pin} > /etc/pbx-agent/secrets/${name} && chown root:pbx-agent /etc/pbx-agent/secrets/${name} && chmod 640 /etc/pbx-agent/secrets/${name}`);
            assert.equal(r.code, 0, r.stderr);
          }
          const board = '  - number: "801"\n    name: Board\n    max_members: 4\n    pin: { secret: board-pin }\n    moderator_pin: { secret: board-host }\n    wait_marked: true\n    end_marked: true\n';
          const commit = await h.pushSite(`${PBX_YAML}${board}`, 'the board room');
          assert.equal(await h.webhook(commit), 202);
          const applied = await h.finished(commit);
          assert.equal(applied?.status, 'applied', JSON.stringify(applied));
          assert.ok(!JSON.stringify(await h.journal()).includes('47114711'), 'a PIN reached the journal');

          // A caller that types a PIN: a Local channel whose other half sends the digits (Local
          // channels pass DTMF), from a context of the operator's own extensions.conf.
          const dtmf = (name: string, digits: string) => `exten => ${name},1,Wait(1)\n same => n,SendDTMF(${digits})\n same => n,Wait(6)\n`;
          const ctx = `\n[e2e-keypad]\n${dtmf('moderator', '91829182#')}${dtmf('member', '47114711#')}`;
          const added = await h.c.sh(`printf '%s' '${ctx}' >> /etc/asterisk/extensions.conf && asterisk -rx 'dialplan reload'`);
          assert.equal(added.code, 0, added.stderr);
          const list = async (want: RegExp): Promise<string> => {
            let out = '';
            for (const deadline = Date.now() + 10_000; Date.now() < deadline && !want.test(out); ) {
              await new Promise((r) => setTimeout(r, 250));
              out = (await h.c.exec(['asterisk', '-rx', 'confbridge list 801'])).stdout.replace(/^No ethernet interface found.*\n/m, '');
            }
            return out;
          };
          await h.c.exec(['asterisk', '-rx', 'channel originate Local/801@internal extension moderator@e2e-keypad']);
          const moderator = await list(/pbx-agent-conf-801-moderator/);
          await h.c.exec(['asterisk', '-rx', 'channel originate Local/801@internal extension member@e2e-keypad']);
          const both = await list(/pbx-agent-conf-801-member/);
          await h.note('conference room 801: moderator PIN, then room PIN, typed on a Local channel', `${moderator.trimEnd()}\n${both.trimEnd()}`);
          // Flags (confbridge list): A admin, M marked; W waits for and E ends with a marked user.
          assert.match(moderator, /^Local\/801@internal-\S+;2 +AM +pbx-agent-conf-801-moderator +pbx-agent-conf-801 /m);
          assert.match(both, /^Local\/801@internal-\S+;2 +WE +pbx-agent-conf-801-member +pbx-agent-conf-801 /m);
        });
      }

      it('folds live objects into pjsip.conf once pushes stop, then removes an extension at once: 401 for its phone, gone at the next fold', async () => {
        // The extension added live above is folded once no change has come for fold_after_seconds.
        const folded = await waitForEvent(h, 'live.folded', 0, 150_000);
        assert.ok(folded, 'no live.folded within 150 s');
        let db = '';
        for (const deadline = Date.now() + 150_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 1000))) {
          db = (await h.c.exec(['asterisk', '-rx', 'database show pbx-agent-live'])).stdout;
          if (/^0 results found\.$/m.test(db)) break;
        }
        assert.match(db, /^0 results found\.$/m, `live objects left after the folds:\n${db}`);
        const foldsBefore = (await h.journal()).filter((l) => l.event === 'live.folded').length;
        assert.equal((await h.sipp('register-200', '2003', PASSWORD('2003'), 5081)).code, 0, '2003 does not register after the fold');

        const commit = await h.pushExtensions(['2001', '2002']);
        assert.equal(await h.webhook(commit), 202);
        const finished = await waitForEvent(h, 'reconcile.finished', 0, 60_000, (l) => l.revision === commit.slice(0, 12));
        assert.equal(finished?.status, 'applied', JSON.stringify(finished));
        assert.ok(Number(finished?.liveObjectEdits) > 0, `not removed live: ${JSON.stringify(finished)}`);
        assert.ok(!(finished?.reloads as string[]).includes('res_pjsip'), `res_pjsip was reloaded: ${JSON.stringify(finished)}`);
        // Right after the run: the right password is refused.
        const refused = await h.sipp('register-401', '2003', PASSWORD('2003'), 5082);
        assert.equal(refused.code, 0, `2003 was not refused with its password after its removal:\n${refused.stdout.slice(-1500)}`);

        const gone = await waitForEvent(h, 'live.folded', foldsBefore, 150_000);
        assert.ok(gone, 'no live.folded after the removal within 150 s');
        const endpoints = await h.c.exec(['asterisk', '-rx', 'pjsip show endpoints']);
        assert.doesNotMatch(endpoints.stdout, /Endpoint: {2}2003\b/);
        assert.match(endpoints.stdout, /Endpoint: {2}2002\b/);
        await h.note(
          'live objects: fold, removal, fold',
          `first fold: ${JSON.stringify(folded)}\nremoval run: ${JSON.stringify(finished)}\nsecond fold: ${JSON.stringify(gone)}`,
        );
      });

      it('reloads nothing in Asterisk when the agent restarts', async () => {
        // At least a second and a half after the last reload, so that a new one would show.
        await new Promise((r) => setTimeout(r, 1500));
        const before = await h.lastReload();
        const restart = await h.c.exec(['systemctl', 'restart', 'pbx-agent']);
        assert.equal(restart.code, 0, restart.stderr);
        const after = await h.lastReload();
        const reloadAt = (x: { secondsAgo: number; at: number }) => x.at / 1000 - x.secondsAgo;
        assert.ok(Math.abs(reloadAt(after) - reloadAt(before)) <= 1, `Asterisk reloaded: last reload ${before.secondsAgo} s ago, then ${after.secondsAgo} s ago`);
        const journal = await h.journal();
        const startups = journal.filter((l) => l.event === 'reconcile.finished');
        assert.equal(startups[startups.length - 1]?.status, 'unchanged');
        await h.note('systemctl restart pbx-agent', `startup run: ${JSON.stringify(startups[startups.length - 1])}; Asterisk's last reload unchanged`);
      });

      it('is restarted by systemd after kill -9', async () => {
        const pid = await h.agentPid();
        assert.ok(pid > 0);
        await h.c.exec(['kill', '-9', String(pid)]);
        let now = pid;
        const deadline = Date.now() + 60_000;
        while (Date.now() < deadline) {
          now = await h.agentPid();
          if (now > 0 && now !== pid && (await h.c.exec(['systemctl', 'is-active', 'pbx-agent'])).stdout.trim() === 'active') break;
          await new Promise((r) => setTimeout(r, 500));
        }
        assert.ok(now > 0 && now !== pid, `pid ${pid} -> ${now}`);
        await h.note('kill -9', `agent pid ${pid} killed; systemd started pid ${now}`);
      });

      it('changes nothing and ends OK when the bootstrap runs a second time', async () => {
        const r = await h.bootstrap();
        await h.note('bootstrap (second run): last lines', r.stdout.trimEnd().split('\n').slice(-4).join('\n'));
        assert.equal(r.code, 0, r.stdout.slice(-4000));
        assert.equal(r.lastLine, 'pbx-agent-bootstrap: OK: Asterisk and pbx-agent are running and the first sync succeeded (0 change(s))');
        assert.ok(firstOutput.length > 0);
      });

      it('keeps the loaded unit at an exposure of 2.0 or less (systemd-analyze security)', async () => {
        const r = await h.c.exec(['systemd-analyze', 'security', '--no-pager', 'pbx-agent.service']);
        const m = /Overall exposure level for pbx-agent\.service: (\d+\.\d+)/.exec(r.stdout);
        assert.ok(m, r.stdout + r.stderr);
        const mem = await h.agentMemory();
        await h.note('systemd-analyze security; daemon memory', `${m[0]}\ndaemon RSS now: ${mem.rss.toFixed(1)} MB (anon ${mem.anon.toFixed(1)}, file ${mem.file.toFixed(1)})`);
        assert.ok(Number(m[1]) <= 2.0, m[0]);
      });
    });
  }
});

