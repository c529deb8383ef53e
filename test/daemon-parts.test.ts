import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { HeapTrimmer, takesGcOptions } from '../agent/daemon/heap.js';
import { acquireLock, LockTimeoutError } from '../agent/record/lock.js';
import { SyncRunner, type Trigger, type TriggerReason } from '../agent/daemon/runner.js';
import { assessHealth } from '../agent/daemon/status.js';
import { RateLimitedLog, verifyWebhook } from '../agent/daemon/webhook.js';
import { AppliedTexts } from '../agent/drift/applied-texts.js';
import { HEADER_FIRST_LINE } from '../agent/managed-files.js';
import { DriftRecorder, readDrifts } from '../agent/drift/recorder.js';
import { removeTempRepos, tempDir } from './support/config-repo.js';
import { signedHeaders } from './support/webhook-client.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('daemon parts', () => {
  after(removeTempRepos);

  describe('SyncRunner', () => {
    it('runs one job at a time and collapses triggers that arrive meanwhile into one follow-up', async () => {
      const gates: Array<ReturnType<typeof deferred>> = [];
      const reasons: TriggerReason[] = [];
      const runner = new SyncRunner(async (reason) => {
        reasons.push(reason);
        const gate = deferred();
        gates.push(gate);
        await gate.promise;
        return { ok: true };
      }, { backoffBaseMs: 1000, backoffMaxMs: 8000 });
      runner.request('startup');
      for (let i = 0; i < 10; i++) runner.request('webhook');
      runner.request('signal');
      assert.equal(gates.length, 1, 'only one run started');
      gates[0]!.resolve();
      await new Promise((r) => setImmediate(r));
      assert.equal(gates.length, 2, 'exactly one follow-up run');
      gates[1]!.resolve();
      await runner.idle();
      assert.deepEqual(reasons, ['startup', 'signal']);
      assert.equal(runner.stats.runs, 2);
      assert.equal(runner.stats.collapsed, 10);
    });

    /** A runner whose first job waits for `gate`; `reasons` lists the jobs run. */
    function firstRunHeld() {
      const reasons: TriggerReason[] = [];
      const gate = deferred();
      const runner = new SyncRunner(async (reason) => {
        reasons.push(reason);
        if (reasons.length === 1) await gate.promise;
        return { ok: true };
      }, { backoffBaseMs: 1000, backoffMaxMs: 8000 });
      return { reasons, gate, runner };
    }

    it('never lets a fold of live objects take the place of a sync that is waiting', async () => {
      const { reasons, gate, runner } = firstRunHeld();
      runner.request('startup');
      runner.request('webhook');
      runner.request('fold');
      gate.resolve();
      await runner.idle();
      assert.deepEqual(reasons, ['startup', 'webhook']);
      // Alone, a fold runs.
      runner.request('fold');
      await runner.idle();
      assert.deepEqual(reasons, ['startup', 'webhook', 'fold']);
    });

    it('starts on the first push at once and folds the rest of the burst into one follow-up run', async () => {
      const { reasons, gate, runner } = firstRunHeld();
      for (let i = 0; i < 10; i++) runner.request('webhook');
      assert.deepEqual(reasons, ['webhook'], 'the first push started a run without waiting for quiet');
      gate.resolve();
      await runner.idle();
      assert.deepEqual(reasons, ['webhook', 'webhook'], 'the other nine became one follow-up');
      assert.equal(runner.stats.collapsed, 8);
      await runner.stop();
    });

    it('tells each run what started it and how long it waited behind the run before it', async () => {
      let now = 1000;
      const gate = deferred();
      const triggers: Trigger[] = [];
      const runner = new SyncRunner(async (_reason, trigger) => {
        triggers.push(trigger);
        if (triggers.length === 1) await gate.promise;
        return { ok: true };
      }, { backoffBaseMs: 1000, backoffMaxMs: 8000, now: () => now });
      runner.request('schedule');
      now = 1040;
      runner.request('webhook');
      now = 1100;
      runner.request('webhook');
      now = 1250;
      gate.resolve();
      await runner.idle();
      // The follow-up answers the first push that came during the run: it waited from 1040 on.
      assert.deepEqual(triggers, [{ reason: 'schedule', waitedMs: 0 }, { reason: 'webhook', waitedMs: 210 }]);
    });

    it('retries sooner when the job asks for it (a config repo out of reach is probed), whatever the backoff', async () => {
      let now = 0;
      let result: { ok: boolean; retryInMs?: number } = { ok: false, retryInMs: 100 };
      const runs: TriggerReason[] = [];
      const runner = new SyncRunner(async (reason) => {
        runs.push(reason);
        return result;
      }, { backoffBaseMs: 60_000, backoffMaxMs: 600_000, now: () => now });
      runner.request('schedule');
      await runner.idle();
      now = 150;
      result = { ok: true };
      runner.request('schedule');
      await runner.idle();
      assert.deepEqual(runs, ['schedule', 'schedule'], 'not held back by the 60 s backoff');
      await runner.stop();
    });

    it('after failures skips scheduled triggers for a doubling, capped backoff, but not pushes', async () => {
      let now = 0;
      let ok = false;
      const runs: TriggerReason[] = [];
      const runner = new SyncRunner(async (reason) => {
        runs.push(reason);
        return { ok };
      }, { backoffBaseMs: 1000, backoffMaxMs: 3000, now: () => now });
      const step = async (reason: TriggerReason) => {
        runner.request(reason);
        await runner.idle();
      };
      await step('schedule'); // fails: backoff 1 s
      now = 500;
      await step('schedule');
      assert.deepEqual(runs, ['schedule'], 'skipped inside the backoff');
      now = 1000;
      await step('schedule'); // fails again: backoff 2 s
      now = 2900;
      await step('schedule');
      now = 3000;
      await step('schedule'); // fails: backoff 4 s capped to 3 s
      now = 5999;
      await step('schedule');
      assert.equal(runs.length, 3);
      await step('webhook'); // a push is not held back
      assert.equal(runs.length, 4);
      ok = true;
      now = 10_000;
      await step('schedule');
      now = 10_001;
      await step('schedule');
      assert.equal(runs.length, 6, 'a success clears the backoff');
      assert.equal(runner.stats.skippedForBackoff, 3);
      await runner.stop();
    });
  });

  describe('webhook signatures', () => {
    const body = Buffer.from('{"ref":"refs/heads/main"}');
    const secret = 'S3cret-webhook';
    for (const provider of ['github', 'gitea', 'gitlab'] as const) {
      it(`accepts a correctly signed ${provider} push and refuses a wrong secret`, () => {
        const good = verifyWebhook({ headers: signedHeaders(provider, body.toString(), secret) }, body, secret);
        assert.equal(good.ok, true);
        const bad = verifyWebhook({ headers: signedHeaders(provider, body.toString(), 'other') }, body, secret);
        assert.equal(bad.ok, false);
      });
    }
    it('refuses a request without any signature header, naming the headers it accepts', () => {
      const v = verifyWebhook({ headers: {} }, body, secret);
      assert.deepEqual(v, { ok: false, status: 401, reason: 'no signature header (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)' });
    });
    it('refuses a GitHub signature of another body', () => {
      const headers = signedHeaders('github', '{"ref":"refs/heads/evil"}', secret);
      assert.equal(verifyWebhook({ headers }, body, secret).ok, false);
    });
  });

  describe('lock', () => {
    it('keeps a second holder out until the first releases, then lets it in', async () => {
      const dir = await tempDir();
      const file = path.join(dir, 'reconcile.lock');
      const release = await acquireLock(file, 0);
      const waitedFor: number[] = [];
      await assert.rejects(acquireLock(file, 150, (pid) => waitedFor.push(pid)), LockTimeoutError);
      assert.deepEqual(waitedFor, [process.pid], 'told once whom it waits for');
      await release();
      const again = await acquireLock(file, 0);
      await again();
    });
    it('takes over a lock left behind by a process that died', async () => {
      const dir = await tempDir();
      const file = path.join(dir, 'reconcile.lock');
      const child = spawn(process.execPath, ['-e', '0']);
      await new Promise((r) => child.once('exit', r));
      await writeFile(file, String(child.pid));
      let waited = false;
      const release = await acquireLock(file, 0, () => (waited = true));
      assert.equal(waited, false, 'a dead holder is not waited for');
      assert.equal((await readFile(file, 'utf8')).trim(), String(process.pid), 'the lock now names this process');
      await release();
      await assert.rejects(readFile(file, 'utf8'), /ENOENT/);
    });
  });

  describe('health', () => {
    const now = new Date('2026-11-28T12:00:00Z');
    const base = { consecutiveFailures: 0, applied: { revision: 'abc', fingerprint: 'f', at: '2026-11-28T11:00:00Z', files: {} } };
    it('is healthy with an applied config and no failures', () => {
      assert.deepEqual(assessHealth(base, { unhealthyAfterFailures: 3, now, daemonPid: 42 }), { healthy: true, problems: [], notes: [] });
    });
    it('notes live objects waiting to be folded, and counts a locked-out removal as still listed, without calling it unhealthy', () => {
      const h = assessHealth({ ...base, live: { added: ['1003'], changed: [], removed: ['1002'], since: '2026-11-28T11:59:00Z' } }, { unhealthyAfterFailures: 3, now, daemonPid: 42 });
      assert.equal(h.healthy, true);
      assert.deepEqual(h.notes, ['live objects since 2026-11-28T11:59:00Z: 1 added, 1 removed (locked out, still listed); folded into pjsip.conf once no change has come for a while']);
    });
    it('is unhealthy after N failed runs, naming the last error', () => {
      const h = assessHealth({ ...base, consecutiveFailures: 3, lastRun: { at: '', status: 'failed', revision: 'x', durationMs: 1, error: 'Asterisk is not reachable' } }, { unhealthyAfterFailures: 3, now, daemonPid: 42 });
      assert.deepEqual(h.problems, ['the last 3 runs failed; last error: Asterisk is not reachable']);
    });
    it('is unhealthy while stuck on a rolled-back commit, and when the source refused a commit', () => {
      const h = assessHealth(
        { ...base, failed: { revision: 'bad1', fingerprint: 'f', reason: 'endpoint 1002 keeps its old configuration', at: '' }, lastRun: { at: '', status: 'skipped', revision: 'bad1', durationMs: 1 }, sourceRejected: { reason: 'history was rewritten', at: '' } },
        { unhealthyAfterFailures: 3, now, daemonPid: undefined },
      );
      assert.equal(h.healthy, false);
      assert.deepEqual(h.problems, [
        'revision bad1 was rolled back (endpoint 1002 keeps its old configuration); waiting for a new commit',
        'the source refused the newest commit: history was rewritten',
      ]);
      assert.deepEqual(h.notes, ['the daemon is not running (no live pid in the state directory)']);
    });
    it('is unhealthy while an error-level drift is open, and only notes a warning-level one', () => {
      const h = assessHealth(base, {
        unhealthyAfterFailures: 3, now, daemonPid: 42,
        drifts: {
          'cloud:drift.eip:eip': { kind: 'cloud', severity: 'error', message: 'Asterisk advertises 203.0.113.10 but the Elastic IP is 203.0.113.99', since: '2026-11-28T11:30:00Z' },
          'file:pbx-agent/pjsip.conf': { kind: 'file', severity: 'warning', message: 'pbx-agent/pjsip.conf modified by hand', since: '2026-11-28T11:40:00Z' },
        },
      });
      assert.equal(h.healthy, false);
      assert.deepEqual(h.problems, ['drift (cloud:drift.eip:eip) since 2026-11-28T11:30:00Z: Asterisk advertises 203.0.113.10 but the Elastic IP is 203.0.113.99']);
      assert.deepEqual(h.notes, ['drift (file:pbx-agent/pjsip.conf) since 2026-11-28T11:40:00Z: pbx-agent/pjsip.conf modified by hand']);
    });
  });

  describe('DriftRecorder', () => {
    it('logs a drift when it appears or changes, reminds after the interval, reports it resolved, and keeps the open ones in drift.json', async () => {
      let t = Date.parse('2026-12-02T10:00:00Z');
      const start = t;
      const dir = await tempDir();
      const r = new DriftRecorder(dir, 60_000, () => t);
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', { severity: 'error', message: 'a' }), 'new');
      t = start + 30_000;
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', { severity: 'error', message: 'a' }), 'none');
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', { severity: 'error', message: 'b' }), 'changed');
      t = start + 89_999;
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', { severity: 'error', message: 'b' }), 'none');
      t = start + 90_000;
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', { severity: 'error', message: 'b' }), 'reminder');
      assert.equal(await r.observe('file:pbx-agent/pjsip.conf', 'file', { severity: 'warning', message: 'edited' }), 'new');
      assert.deepEqual(await readDrifts(dir), {
        'cloud:drift.eip:eip': { kind: 'cloud', severity: 'error', message: 'b', since: '2026-12-02T10:00:00.000Z', lastReminder: '2026-12-02T10:01:30.000Z' },
        'file:pbx-agent/pjsip.conf': { kind: 'file', severity: 'warning', message: 'edited', since: '2026-12-02T10:01:30.000Z' },
      });
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', undefined), 'resolved');
      assert.equal(await r.observe('cloud:drift.eip:eip', 'cloud', undefined), 'none');
      assert.deepEqual(Object.keys(await readDrifts(dir)), ['file:pbx-agent/pjsip.conf']);

      // A restarted daemon picks the open drifts up: not "new" again, and the reminder clock goes on.
      const again = new DriftRecorder(dir, 60_000, () => t);
      await again.load();
      assert.equal(await again.observe('file:pbx-agent/pjsip.conf', 'file', { severity: 'warning', message: 'edited' }), 'none');
    });
  });

  describe('AppliedTexts', () => {
    /** A pjsip.conf-like text well above the compression threshold, with multi-byte characters. */
    const bigText = (tag: string) =>
      `${HEADER_FIRST_LINE}\n; more header\n\n` + Array.from({ length: 400 }, (_, i) => `[${tag}${i}]\ntype=endpoint\ncallerid="Zoë Ł ${i} ☎" <${i}>\n`).join('\n');

    it('gives back each applied text exactly, once held compressed, and an absent file as absent', async () => {
      const texts = new AppliedTexts();
      const pjsip = bigText('1');
      const done = texts.replace(new Map([['pbx-agent/pjsip.conf', pjsip], ['pbx-agent/rtp.conf', '[general]\nrtpstart=10000\n'], ['pbx-agent/voicemail.conf', undefined]]));
      // Usable before the compression is done, and the same after it.
      assert.equal(await texts.get('pbx-agent/pjsip.conf'), pjsip);
      await done;
      assert.equal(await texts.get('pbx-agent/pjsip.conf'), pjsip);
      assert.equal(await texts.get('pbx-agent/rtp.conf'), '[general]\nrtpstart=10000\n');
      assert.equal(await texts.get('pbx-agent/voicemail.conf'), undefined);
      assert.equal(await texts.body('res_pjsip'), pjsip.slice(pjsip.indexOf('\n\n') + 2));
      const plain = Buffer.byteLength(pjsip) + Buffer.byteLength('[general]\nrtpstart=10000\n');
      assert.ok(texts.storedBytes() < plain / 4, `held ${texts.storedBytes()} bytes for ${plain} bytes of text`);
    });

    it('keeps the newer set when the compression of an older one finishes after it was replaced', async () => {
      const texts = new AppliedTexts();
      const older = texts.replace(new Map([['pbx-agent/pjsip.conf', bigText('old')]]));
      // Small, so nothing of the newer set is compressed over whatever the older one leaves.
      const newer = texts.replace(new Map([['pbx-agent/pjsip.conf', '[100]\ntype=aor\n']]));
      await Promise.all([older, newer]);
      assert.equal(await texts.get('pbx-agent/pjsip.conf'), '[100]\ntype=aor\n');
    });
  });

  describe('RateLimitedLog', () => {
    it('writes the first line of a burst, then one per interval with the count left out', () => {
      let t = 0;
      const lines: number[] = [];
      const limited = new RateLimitedLog(60_000, () => t);
      for (let i = 0; i < 1000; i++) limited.note((suppressed) => lines.push(suppressed));
      assert.deepEqual(lines, [0]);
      t = 60_000;
      limited.note((suppressed) => lines.push(suppressed));
      assert.deepEqual(lines, [0, 999]);
    });
  });
});

describe('HeapTrimmer', () => {
  it('collects after a run that grew the live heap by the threshold, and not after one that did not', () => {
    let collections = 0;
    const kept: unknown[] = [];
    const trimmer = new HeapTrimmer(() => {
      collections++;
    }, 1024 * 1024);
    assert.equal(trimmer.afterRun(), false, 'nothing grew yet');
    // Live data the run leaves behind: ~30 MB of small objects, far more than any garbage of
    // earlier tests that a collection during the loop could free below the baseline.
    for (let i = 0; i < 400_000; i++) kept.push({ i, text: `extension ${i}`.repeat(4) });
    assert.equal(trimmer.afterRun(), true);
    assert.equal(collections, 1);
    assert.equal(trimmer.afterRun(), false, 'no growth since the last collection');
    assert.equal(collections, 1);
    assert.ok(kept.length > 0);
  });

  it("asks V8 12 and later for the collection that returns pages, and Node.js 20's V8 for a plain one", () => {
    const calls: unknown[][] = [];
    // Any heap counts as grown (-Infinity): this is about how gc is called, not when.
    assert.equal(new HeapTrimmer((...args) => void calls.push(args), -Infinity, true).afterRun(), true);
    assert.equal(new HeapTrimmer((...args) => void calls.push(args), -Infinity, false).afterRun(), true);
    assert.deepEqual(calls, [[{ type: 'major', execution: 'sync', flavor: 'last-resort' }], []]);
    assert.equal(takesGcOptions('11.3.244.8-node.33'), false);
    assert.equal(takesGcOptions('12.4.254.21-node.33'), true);
    assert.equal(takesGcOptions('13.6.233.17-node.40'), true);
  });

  it('collects once no run has started for the quiet time, not while runs keep coming', async () => {
    let collections = 0;
    // Any heap counts as grown (-Infinity), so only the timing decides whether it collects (a GC
    // elsewhere in the test run may shrink the heap below the baseline).
    const trimmer = new HeapTrimmer(() => void collections++, -Infinity, true, 50);
    trimmer.runEnded();
    trimmer.runStarting(); // the next push of a burst
    assert.equal(trimmer.waiting, false);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(collections, 0, 'a run started before the quiet time was up');
    trimmer.runEnded();
    assert.equal(trimmer.waiting, true);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(collections, 1);
    assert.equal(trimmer.waiting, false);
  });

  it('does nothing where node runs without --expose-gc', () => {
    const kept = Array.from({ length: 50_000 }, (_, i) => ({ i, text: `x${i}`.repeat(8) }));
    assert.equal(new HeapTrimmer(undefined, 1).afterRun(), false);
    assert.ok(kept.length > 0);
  });
});
