/**
 * The diffs people read (`render --diff`, `plan`) and the redacted diffs in drift.file log lines:
 * line numbers that point into the file, patch headers without stray characters, no credential.
 */
import assert from 'node:assert/strict';
import { compareManagedFile } from '../agent/drift/files.js';
import { renderConfigRepo } from '../agent/pipeline.js';
import { fileDiff, planChanges } from '../agent/plan/index.js';
import type { RenderedFile } from '../agent/render/index.js';
import { voicemailPin } from '../agent/render/voicemail.js';
import { DirectorySecretStore, type HostFacts } from '../agent/resolve/index.js';
import { BASE_PBX, extensionsYaml, makeRepo, removeTempRepos, testMd5 } from './support/config-repo.js';

const HOST: HostFacts = { secrets: new DirectorySecretStore('/nonexistent-secrets-dir'), elasticIp: async () => ({ problem: 'not on EC2' }) };

async function render(entries: Parameters<typeof extensionsYaml>[0], revision: string): Promise<RenderedFile[]> {
  const outcome = await renderConfigRepo(await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(entries) }), HOST, revision);
  assert.ok(outcome.files, JSON.stringify(outcome.issues));
  return outcome.files;
}

/** Every hunk of `diff`, checked against the two files: each line must be there, at the line number the hunk gives. */
function assertHunksPointIntoFiles(diff: string, before: string, after: string): number {
  const lines = diff.split('\n');
  let hunks = 0;
  for (let i = 0; i < lines.length; i++) {
    const m = /^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@$/.exec(lines[i]!);
    if (!m) continue;
    hunks++;
    let [oldLine, newLine] = [Number(m[1]), Number(m[2])];
    const [oldFile, newFile] = [before.split('\n'), after.split('\n')];
    for (let j = i + 1; j < lines.length && !lines[j]!.startsWith('@@'); j++) {
      const [mark, text] = [lines[j]![0], lines[j]!.slice(1)];
      if (mark === ' ' || mark === '-') assert.equal(oldFile[oldLine++ - 1], text, `old line ${oldLine - 1} in hunk ${lines[i]}`);
      if (mark === ' ' || mark === '+') assert.equal(newFile[newLine++ - 1], text, `new line ${newLine - 1} in hunk ${lines[i]}`);
    }
  }
  return hunks;
}

describe('diffs for people and logs', () => {
  after(removeTempRepos);

  it("numbers each hunk with the file's own line numbers, header lines included", async () => {
    const numbers = ['1001', '1002', '1003', '1004', '1005'];
    const before = await render(numbers, 'r1');
    const after = await render([...numbers.slice(0, 4), { number: '1005', extra: 'max_contacts: 7' }], 'r2');
    const onDisk = new Map(before.map((f) => [f.path, f.text]));
    const change = planChanges(after, onDisk).files.find((f) => f.path === 'pbx-agent/pjsip.conf')!;
    const diff = fileDiff(change, onDisk.get(change.path));
    assert.match(diff, /^-max_contacts=3$/m);
    assert.equal(assertHunksPointIntoFiles(diff, onDisk.get(change.path)!, change.rendered.text), 1);
  });

  it('numbers the hunk of a new file from its first line after the header', async () => {
    const files = await render(['1001'], 'r1');
    const change = planChanges(files, new Map()).files.find((f) => f.path === 'pbx-agent/rtp.conf')!;
    const diff = fileDiff(change, undefined);
    assert.equal(assertHunksPointIntoFiles(diff, '', change.rendered.text), 1);
  });

  it('ends the ---/+++ lines with the file name, not a tab', async () => {
    const files = await render(['1001'], 'r1');
    const diffs = planChanges(files, new Map()).files.map((f) => fileDiff(f, undefined)).join('\n');
    const drift = compareManagedFile('pbx-agent/rtp.conf', 'a\n', 'b\n')!.diff;
    for (const line of `${diffs}\n${drift}`.split('\n').filter((l) => /^(---|\+\+\+) /.test(l))) {
      assert.match(line, /^(---|\+\+\+) \S+$/, JSON.stringify(line));
    }
  });

  it('never shows a voicemail PIN, in a plan diff or in a drift diff', async () => {
    const before = await render([{ number: '1001', extra: 'voicemail: true' }], 'r1');
    // A new credential gives the box a new PIN: the line changes, the PINs are not shown.
    const after = await render([{ number: '1001', extra: 'voicemail: { email: alice@example.com }' }], 'r2');
    const changed = await renderConfigRepo(
      await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml([{ number: '1001', extra: 'voicemail: true' }]).replace(testMd5('1001'), 'f'.repeat(32)) }),
      HOST,
      'r3',
    );
    const pins = [voicemailPin('1001', testMd5('1001')), voicemailPin('1001', 'f'.repeat(32))];
    const vm = (files: RenderedFile[]) => files.find((f) => f.path === 'pbx-agent/voicemail.conf')!;
    const onDisk = new Map(before.map((f) => [f.path, f.text]));
    for (const next of [after, changed.files!]) {
      const change = planChanges(next, onDisk).files.find((f) => f.path === 'pbx-agent/voicemail.conf')!;
      const diff = fileDiff(change, onDisk.get(change.path));
      assert.match(diff, /^[-+]1001 => <redacted [0-9a-f]{8}>,/m);
      for (const pin of pins) assert.ok(!diff.includes(pin.slice(1)), `PIN ${pin} in\n${diff}`);
    }
    assert.ok(vm(before).text.includes(pins[0]!), 'the rendered file itself does hold the PIN');
    const handEdit = vm(before).text.replace(pins[0]!, '1234');
    const drift = compareManagedFile('pbx-agent/voicemail.conf', vm(before).text, handEdit)!.diff;
    assert.match(drift, /^\+1001 => <redacted [0-9a-f]{8}>,User 1001$/m);
    assert.ok(!drift.includes(pins[0]!.slice(1)) && !/\b1234\b/.test(drift), drift);
    const spaced = compareManagedFile('pbx-agent/voicemail.conf', vm(before).text, handEdit.replace('1001 => 1234', '1001 = 4321'))!.diff;
    assert.ok(!spaced.includes('4321'), spaced);
  });
});
