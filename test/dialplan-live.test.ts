/**
 * One extension's dialplan changed in place through AMI (DialplanExtensionAdd / Remove) instead of
 * pbx_config re-reading all of extensions.conf: what the plan chooses, what Asterisk is sent, that
 * the live dialplan then equals what a reload of the written file gives, and the cases that must
 * still reload. The loopback Asterisk answers the actions as transcript p_ (a real 20.6) does.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { compareDialplan, liveEditLimit } from '../agent/plan/dialplan.js';
import { reconcile, type ReconcileOutcome } from '../agent/reconcile.js';
import { StateStore } from '../agent/record/state.js';
import { renderExtensionsConf } from '../agent/render/extensions.js';
import { extensionEntries } from '../agent/verify/index.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos } from './support/config-repo.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const CONTEXT = 'pbx-agent-extensions';

describe('live dialplan edits: the plan', () => {
  const conf = (numbers: string[], ring = 30) =>
    [
      '[pbx-agent-dial]',
      'exten => s,1,Set(x=1)',
      '',
      '[pbx-agent-extensions]',
      ...numbers.flatMap((n) => [`exten => ${n},1,Gosub(pbx-agent-dial,s,1(${n},${ring},))`, 'same => n,Hangup()', `exten => ${n},hint,PJSIP/${n}`]),
      'exten => *97,1,Set(vmbox=${CHANNEL(endpoint)})',
      'same => n(own),VoiceMailMain(${vmbox}@pbx-agent,s)',
      '',
      '[internal]',
      'include => pbx-agent-extensions',
      '',
    ].join('\n');

  it('adds an extension with its two priorities and its hint, each set with Replace so a retry cannot fail', () => {
    const diff = compareDialplan(conf(['1001']), conf(['1001', '1002']));
    assert.equal(diff.reloadReason, undefined);
    assert.deepEqual(diff.added, ['1002']);
    assert.deepEqual(diff.edits, [
      { kind: 'set', context: CONTEXT, extension: '1002', priority: 1, application: 'Gosub', data: 'pbx-agent-dial,s,1(1002,30,)' },
      { kind: 'set', context: CONTEXT, extension: '1002', priority: 2, application: 'Hangup', data: '' },
      { kind: 'set', context: CONTEXT, extension: '1002', priority: 'hint', application: 'PJSIP/1002', data: '' },
    ]);
  });

  it('changes only the priority that differs, in place, and leaves the hint alone', () => {
    const diff = compareDialplan(conf(['1001', '1002']), conf(['1001', '1002']).replace('1(1002,30,)', '1(1002,45,)'));
    assert.deepEqual(diff.changed, ['1002']);
    assert.deepEqual(diff.edits, [{ kind: 'set', context: CONTEXT, extension: '1002', priority: 1, application: 'Gosub', data: 'pbx-agent-dial,s,1(1002,45,)' }]);
  });

  it('removes a whole extension, hint included, with one action', () => {
    const diff = compareDialplan(conf(['1001', '1002']), conf(['1001']));
    assert.deepEqual(diff.removed, ['1002']);
    assert.deepEqual(diff.edits, [{ kind: 'remove', context: CONTEXT, extension: '1002' }]);
  });

  it('reloads instead when anything outside the dial-by-number extensions changes (a context, an include, a room)', () => {
    const diff = compareDialplan(conf(['1001']), conf(['1001', '1002']).replace('include => pbx-agent-extensions', 'include => pbx-agent-extensions\ninclude => trunks'));
    assert.equal(diff.edits, undefined);
    assert.match(diff.reloadReason!, /not only to extensions of the dial-by-number context/);
    assert.deepEqual(diff.added, ['1002'], 'the comparison is still there for verification');
  });

  it('reloads instead when an entry has a label, which one action cannot set', () => {
    const before = conf(['1001']);
    const diff = compareDialplan(before, before.replace('n(own),VoiceMailMain', 'n(own2),VoiceMailMain'));
    assert.equal(diff.edits, undefined);
    assert.match(diff.reloadReason!, /extension \*97 uses a label/);
  });

  it('reloads instead when extensions.conf is new, or when so many extensions change that one reload is cheaper', () => {
    assert.match(compareDialplan('', conf(['1001'])).reloadReason!, /new/);
    const many = Array.from({ length: 100 }, (_, i) => String(2000 + i));
    assert.equal(liveEditLimit(101), 10);
    assert.equal(liveEditLimit(10_001), 200);
    const all = compareDialplan(conf(many), conf(many, 45));
    assert.equal(all.changed.length, 100);
    assert.match(all.reloadReason!, /100 extensions change/);
  });

  /** The blocks of the dial-by-number context, the slow way: every line. */
  const blocksOf = (body: string) => {
    const out = new Map<string, string>();
    let inside = false;
    let number = '';
    for (const line of body.split('\n')) {
      if (line.startsWith('[')) inside = line === `[${CONTEXT}]`;
      else if (inside && line.startsWith('exten => ')) number = line.slice(9, line.indexOf(','));
      if (inside && /^(exten|same) => /.test(line)) out.set(number, `${out.get(number) ?? ''}${line}\n`);
    }
    return out;
  };
  const numbers = Array.from({ length: 30 }, (_, i) => String(1000 + i));
  const cases: Array<[string, string, string]> = [
    ['one added at the end', conf(numbers), conf([...numbers, '2000'])],
    ['one added first', conf(numbers.slice(1)), conf(numbers)],
    ['one removed in the middle', conf(numbers), conf(numbers.filter((n) => n !== '1015'))],
    ['the last removed', conf(numbers), conf(numbers.slice(0, -1))],
    ['one changed', conf(numbers), conf(numbers).replace('1(1007,30,)', '1(1007,45,)')],
    ['two far apart changed', conf(numbers), conf(numbers).replace('1(1001,30,)', '1(1001,45,)').replace('1(1028,30,)', '1(1028,45,)')],
    ['a hint changed', conf(numbers), conf(numbers).replace('1012,hint,PJSIP/1012', '1012,hint,PJSIP/1012&PJSIP/1013')],
    ['one moved to the end (a hand edit)', conf(numbers), conf([...numbers.filter((n) => n !== '1003'), '1003'])],
    ['a copy made by hand is dropped', conf([...numbers, '1003']), conf(numbers)],
  ];
  for (const [what, before, after] of cases) {
    it(`finds what comparing every line finds: ${what}`, () => {
      const diff = compareDialplan(before, after);
      const [a, b] = [blocksOf(before), blocksOf(after)];
      assert.deepEqual(diff.added, [...b.keys()].filter((n) => !a.has(n)));
      assert.deepEqual(diff.removed, [...a.keys()].filter((n) => !b.has(n)));
      assert.deepEqual([...diff.changed].sort(), [...b.keys()].filter((n) => a.has(n) && a.get(n) !== b.get(n)).sort());
      assert.equal(diff.reloadReason, undefined);
      // Each extension planned whole: every line of its block, whichever line changed.
      for (const n of [...diff.added, ...diff.changed]) assert.equal(diff.expected.get(n)?.length, b.get(n)!.split('\n').length - 1, n);
    });
  }

  it('reads the entries of the extensions.conf the agent renders (10,000 extensions: one set of edits for one change)', () => {
    const state = (n: number) => ({
      extensions: Array.from({ length: n }, (_, i) => ({ number: String(10_000 + i), ringSeconds: 30, voicemail: i % 2 === 0 })),
      featureCodes: { voicemail: '*97' },
      conferences: [],
      contexts: [{ name: 'internal', includes: [] }],
    });
    const before = renderExtensionsConf(state(10_000) as never);
    const afterState = state(10_001);
    const after = renderExtensionsConf(afterState as never);
    const diff = compareDialplan(before, after);
    assert.deepEqual(diff.added, ['20000']);
    assert.deepEqual(diff.edits?.map((e) => e.kind === 'set' && `${e.priority} ${e.application}(${e.data})`), [
      '1 Gosub(pbx-agent-dial,s,1(20000,30,20000@pbx-agent))',
      '2 Hangup()',
      'hint PJSIP/20000()',
    ]);
  });
});

describe('live dialplan edits: reading the dialplan back', () => {
  it('reads `dialplan show` as a real Asterisk 20.6 prints it, from the file and from an AMI edit (transcripts o_, p_)', () => {
    const fromFile = [
      "[ Context 'pbx-agent-extensions' created by 'pbx_config' ]",
      "  '1001' =>         hint: PJSIP/1001                              [extensions.conf:30]",
      '                    1. Gosub(pbx-agent-dial,s,1(1001,30,1001@pbx-agent)) [extensions.conf:28]',
      '                    2. Hangup()                                   [extensions.conf:29]',
      '',
      '-= 1 extension (3 priorities) in 1 context. =-',
    ];
    assert.deepEqual([...extensionEntries(fromFile, '1001')], [
      ['hint', 'PJSIP/1001'],
      [1, 'Gosub(pbx-agent-dial,s,1(1001,30,1001@pbx-agent))'],
      [2, 'Hangup()'],
    ]);
    const fromAmi = [
      "[ Context 'pbx-agent-extensions' created by 'pbx_config' ]",
      "  '1005' =>         hint: PJSIP/1005                              [pbx_config]",
      '                    1. Gosub(pbx-agent-dial,s,1(1005,30,))        [pbx_config]',
      '',
      '-= 1 extension (2 priorities) in 1 context. =-',
    ];
    assert.deepEqual([...extensionEntries(fromAmi, '1005')], [['hint', 'PJSIP/1005'], [1, 'Gosub(pbx-agent-dial,s,1(1005,30,))']]);
    assert.equal(extensionEntries(fromAmi, '1001').size, 0, 'another extension\'s lines are not taken');
  });
});

describe('live dialplan edits against a loopback Asterisk', () => {
  let host: PbxHost;
  beforeEach(async () => {
    host = await startPbxHost();
  });
  afterEach(async () => {
    await host.stop();
  });
  after(removeTempRepos);

  const repo = (numbers: Array<string | { number: string; extra?: string }>, pbx = BASE_PBX) =>
    makeRepo({ 'pbx.yaml': pbx, 'extensions/staff.yaml': extensionsYaml(numbers) });
  const run = async (dir: string, revision: string): Promise<ReconcileOutcome> => reconcile(host.deps(), { dir, revision });
  const dialplanActions = () => host.asterisk.actionsReceived().filter((a) => /^Dialplan/.test(a.action));
  /** The live dialplan of the context, entries only (where each came from differs: file or AMI). */
  const liveContext = async () =>
    (await host.client.command(`dialplan show ${CONTEXT}`)).map((l) => l.replace(/\s+\[[^\]]*\]\s*$/, '').trimEnd());

  it('adds, changes and removes an extension without re-reading extensions.conf, and the result is what a reload of the file gives', async () => {
    await run(await repo(['1001', '1002']), 'r1');
    assert.equal(host.asterisk.reloadCount('pbx_config'), 1);

    const added = await run(await repo(['1001', '1002', '1003']), 'r2');
    assert.equal(added.status, 'applied', added.error);
    assert.equal(added.dialplanEdits, 3);
    const shown = await host.client.command(`dialplan show 1003@${CONTEXT}`);
    assert.deepEqual([...extensionEntries(shown, '1003').keys()], ['hint', 1, 2]);

    const changed = await run(await repo(['1001', '1002', { number: '1003', extra: 'ring_seconds: 45' }]), 'r3');
    assert.equal(changed.status, 'applied', changed.error);
    assert.equal(changed.dialplanEdits, 1);
    assert.match(extensionEntries(await host.client.command(`dialplan show 1003@${CONTEXT}`), '1003').get(1)!, /\(1003,45,/);

    const removed = await run(await repo(['1001', { number: '1003', extra: 'ring_seconds: 45' }]), 'r4');
    assert.equal(removed.status, 'applied', removed.error);
    assert.equal(removed.dialplanEdits, 1);
    assert.equal(host.asterisk.reloadCount('pbx_config'), 1, 'three changes, no reload of the dialplan');
    assert.ok(!removed.reloads.includes('pbx_config'));

    // What a restart of Asterisk would load from the written file is what the edits made live.
    const live = await liveContext();
    await host.client.reload('pbx_config');
    assert.deepEqual(await liveContext(), live);
    assert.ok(live.some((l) => l.includes("'1003' =>")) && !live.some((l) => l.includes("'1002' =>")));
  });

  it('sends nothing to Asterisk for the dialplan when extensions.conf does not change', async () => {
    await run(await repo(['1001', '1002']), 'r1');
    const out = await run(await repo([{ number: '1001', extra: 'max_contacts: 5' }, '1002']), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.deepEqual(out.reloads, ['res_pjsip']);
    assert.equal(out.dialplanEdits, 0);
    assert.deepEqual(dialplanActions(), []);
  });

  it('rolls back an edit Asterisk refuses: the old file is written back and reloaded, and the extension is gone again', async () => {
    await run(await repo(['1001', '1002']), 'r1');
    const before = await readFile(path.join(host.configDir, 'pbx-agent/extensions.conf'), 'utf8');
    host.asterisk.failNextAction('DialplanExtensionAdd', 'Out of Memory');
    const out = await run(await repo(['1001', '1002', '1003']), 'r2');
    assert.equal(out.status, 'rolled_back');
    assert.match(out.error!, /reload of pbx_config was refused: DialplanExtensionAdd 1003,1@pbx-agent-extensions failed: Out of Memory/);
    assert.equal(await readFile(path.join(host.configDir, 'pbx-agent/extensions.conf'), 'utf8'), before);
    assert.equal(host.asterisk.reloadCount('pbx_config'), 2, 'the rollback reloads the restored file');
    assert.ok(!host.asterisk.liveState().dialplan[CONTEXT]!.includes('1003'));
    assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
  });

  it('finishes a change left pending with the same edits, whatever part of them Asterisk already has', async () => {
    await run(await repo(['1001', '1002', '1003']), 'r1');
    // The sets arrive; the removal is put off (Asterisk on its way down): the change stays pending
    // with Asterisk holding part of it.
    host.asterisk.failNextAction('DialplanExtensionRemove', 'Asterisk is shutting down');
    const target = await repo(['1001', { number: '1002', extra: 'ring_seconds: 45' }, '1004']);
    const putOff = await run(target, 'r2');
    assert.equal(putOff.status, 'failed');
    assert.equal(putOff.code, 'reload.busy');
    assert.ok((await new StateStore(host.stateDir).read()).pending, 'the change is pending');
    assert.ok(host.asterisk.liveState().dialplan[CONTEXT]!.includes('1003'), 'not removed yet');

    const resumed = await run(target, 'r2');
    assert.equal(resumed.status, 'applied', resumed.error);
    assert.ok(resumed.dialplanEdits > 0);
    assert.ok(!resumed.reloads.includes('pbx_config'), 'no reload of 10,000 extensions to finish a few edits');
    const live = host.asterisk.liveState().dialplan[CONTEXT]!;
    assert.ok(live.includes('1004') && !live.includes('1003'));
    assert.match(extensionEntries(await host.client.command(`dialplan show 1002@${CONTEXT}`), '1002').get(1)!, /\(1002,45,/);
  });

  it('sends an edit again when the connection drops before its answer, and verifies the result', async () => {
    await run(await repo(['1001', '1002']), 'r1');
    host.asterisk.closeAfterNextAction({ answer: false, action: 'DialplanExtensionAdd' });
    const out = await run(await repo(['1001', '1002', '1003']), 'r2');
    assert.equal(out.status, 'applied', out.error);
    assert.equal(host.asterisk.actionCount('DialplanExtensionAdd'), 4, 'three edits, the first of them twice');
    assert.deepEqual([...extensionEntries(await host.client.command(`dialplan show 1003@${CONTEXT}`), '1003').keys()], ['hint', 1, 2]);
  });

  it('logs at most 100 numbers per list in reconcile.finished, with the whole counts beside them', async () => {
    const numbers = Array.from({ length: 150 }, (_, i) => String(3000 + i));
    await run(await repo(numbers), 'r1');
    const finished = host.events.filter((e) => e.event === 'reconcile.finished').pop()!;
    assert.equal((finished.extensions as { added: string[] }).added.length, 100);
    assert.deepEqual(finished.extensionCounts, { added: 150, changed: 0, removed: 0 });
  });
});
