/**
 * The mass-removal guard: a change that would take every phone (or more than removal_guard
 * allows) off the PBX is refused, with the PBX untouched and `status` unhealthy, until it is
 * acknowledged by a commit trailer or --allow-mass-removal.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { appendFile, cp, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { assessHealth } from '../agent/daemon/status.js';
import { renderConfigRepo } from '../agent/pipeline.js';
import { checkRemovals, planChanges } from '../agent/plan/index.js';
import { reconcile } from '../agent/reconcile.js';
import { StateStore } from '../agent/record/state.js';
import type { RenderedFile } from '../agent/render/index.js';
import { DirectorySecretStore, type HostFacts } from '../agent/resolve/index.js';
import { BASE_PBX, edit, extensionsYaml, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { GitRemote } from './support/git-remote.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';

const HOST: HostFacts = { secrets: new DirectorySecretStore('/nonexistent-secrets-dir'), elasticIp: async () => ({ problem: 'not on EC2' }) };
const numbers = (n: number, from = 1001) => Array.from({ length: n }, (_, i) => String(from + i));

async function rendered(files: Record<string, string>) {
  const outcome = await renderConfigRepo(await makeRepo(files), HOST, 'r');
  assert.ok(outcome.files && outcome.state, JSON.stringify(outcome.issues));
  return { files: outcome.files, state: outcome.state };
}
const onDiskOf = (files: RenderedFile[]) => new Map(files.map((f) => [f.path, f.text]));

/** The guard's verdict on going from `before` to `after` extension numbers (all in extensions/staff.yaml). */
async function verdict(before: string[], after: string[], pbx = BASE_PBX) {
  const was = await rendered({ 'pbx.yaml': pbx, 'extensions/staff.yaml': extensionsYaml(before) });
  const now = await rendered({ 'pbx.yaml': pbx, ...(after.length ? { 'extensions/staff.yaml': extensionsYaml(after) } : {}) });
  return checkRemovals(planChanges(now.files, onDiskOf(was.files)), now.state.removalGuard);
}

const git = (dir: string, ...args: string[]) =>
  execFileSync('git', ['-c', 'user.name=Ops', '-c', 'user.email=ops@example.com', ...args], { cwd: dir, encoding: 'utf8' });

describe('mass-removal guard', () => {
  after(removeTempRepos);

  describe('the rule', () => {
    it('refuses a change that removes every extension, however few there are', async () => {
      assert.equal((await verdict(['1001'], []))?.reason, 'this change removes the only extension of the PBX (1001): no phone would be left');
      assert.equal((await verdict(numbers(3), []))?.reason, 'this change removes all 3 extensions of the PBX (1001 1002 1003): no phone would be left');
    });

    it('allows removing up to max(max_count, max_percent) of the extensions, and refuses one more', async () => {
      // 60 extensions: the default limit is max(10, 25% of 60 = 15) = 15.
      assert.equal(await verdict(numbers(60), numbers(45, 1016)), undefined);
      const refused = await verdict(numbers(60), numbers(44, 1017));
      assert.equal(refused?.limit, 15);
      assert.equal(
        refused?.reason,
        'this change removes 16 (1001 1002 1003 1004 1005 1006 1007 1008 ... (16)) of the 60 extensions of the PBX (27%), more than the 15 one change may take away (removal_guard in pbx.yaml)',
      );
      // Small PBX: max_count allows more than the share does.
      assert.equal(await verdict(numbers(12), numbers(2, 1011)), undefined);
    });

    it('takes its limits from removal_guard in pbx.yaml', async () => {
      const strict = edit(BASE_PBX, 'dialplan:', 'removal_guard: { max_count: 0, max_percent: 0 }\ndialplan:');
      assert.equal((await verdict(numbers(3), numbers(2), strict))?.limit, 0);
      const lax = edit(BASE_PBX, 'dialplan:', 'removal_guard: { max_count: 100, max_percent: 100 }\ndialplan:');
      assert.equal(await verdict(numbers(60), numbers(1), lax), undefined);
    });

    it('counts phones locked out by a sip.realm change that leaves their md5 credentials as they were', async () => {
      const renamed = edit(BASE_PBX, 'dialplan:', 'sip: { realm: acme }\ndialplan:');
      const was = await rendered({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(numbers(3)) });
      const now = await rendered({ 'pbx.yaml': renamed, 'extensions/staff.yaml': extensionsYaml(numbers(3)) });
      const plan = planChanges(now.files, onDiskOf(was.files));
      assert.deepEqual(plan.lockedOut, ['1001', '1002', '1003']);
      assert.equal(checkRemovals(plan, now.state.removalGuard)?.reason, 'this change locks out 3 (1001 1002 1003) of the 3 extensions of the PBX: no phone would be left working');
    });
  });

  describe('reconcile against a loopback Asterisk', () => {
    let host: PbxHost;
    beforeEach(async () => {
      host = await startPbxHost();
    });
    afterEach(async () => {
      await host.stop();
    });
    const events = (name: string) => host.events.filter((e) => e.event === name);

    /** A config repo in git with three phones, applied. */
    async function appliedRepo(): Promise<string> {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/office.yaml': extensionsYaml(numbers(3)) });
      git(dir, 'init', '-q', '-b', 'main');
      git(dir, 'add', '.');
      git(dir, 'commit', '-q', '-m', 'Three phones');
      assert.equal((await reconcile(host.deps(), { dir, revision: 'r1' })).status, 'applied');
      return dir;
    }

    it('refuses a misspelt extensions folder: nothing written or reloaded, reconcile.refused logged, status unhealthy with the reason', async () => {
      const dir = await appliedRepo();
      git(dir, 'mv', 'extensions', 'extentions');
      git(dir, 'commit', '-q', '-m', 'Tidy up');
      const reloads = host.asterisk.reloadCount();
      const out = await reconcile(host.deps(), { dir, revision: 'r2' });
      assert.equal(out.status, 'refused');
      assert.deepEqual(out.changedFiles, []);
      assert.equal(host.asterisk.reloadCount(), reloads, 'nothing reloaded');
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
      assert.ok(out.issues.some((i) => i.file === 'extentions/' && /did you mean extensions\/\?/.test(i.message)));
      const [refused] = events('reconcile.refused');
      assert.equal(refused?.level, 'error');
      assert.deepEqual(refused?.removed, ['1001', '1002', '1003']);
      assert.match(String(refused?.fix), /Allow-Mass-Removal: yes/);
      const health = assessHealth(await new StateStore(host.stateDir).read(), { unhealthyAfterFailures: 3, now: new Date(), daemonPid: 1 });
      assert.equal(health.healthy, false);
      assert.match(health.problems.join('\n'), /^revision r2 was refused and nothing was applied: this change removes all 3 extensions of the PBX .*--allow-mass-removal/m);
    });

    it('applies it once the commit being applied carries "Allow-Mass-Removal: yes", and status is healthy again', async () => {
      const dir = await appliedRepo();
      await rename(path.join(dir, 'extensions'), path.join(dir, 'gone'));
      git(dir, 'add', '-A');
      git(dir, 'commit', '-q', '-m', 'Close the office');
      assert.equal((await reconcile(host.deps(), { dir, revision: 'r2' })).status, 'refused');
      git(dir, 'commit', '-q', '--allow-empty', '-m', 'Close the office, really', '-m', 'Allow-Mass-Removal: yes');
      const out = await reconcile(host.deps(), { dir, revision: 'r3' });
      assert.equal(out.status, 'applied', out.error);
      assert.deepEqual(host.asterisk.liveEndpoints(), []);
      assert.match(String(events('reconcile.removal_acknowledged')[0]?.by), /^the trailer "Allow-Mass-Removal: yes" of commit [0-9a-f]{12}$/);
      const state = await new StateStore(host.stateDir).read();
      assert.equal(state.refused, undefined);
      assert.equal(assessHealth(state, { unhealthyAfterFailures: 3, now: new Date(), daemonPid: 1 }).healthy, true);
    });

    it('does not take a trailer of HEAD for uncommitted changes made after it', async () => {
      const dir = await appliedRepo();
      git(dir, 'commit', '-q', '--allow-empty', '-m', 'Earlier', '-m', 'Allow-Mass-Removal: yes');
      await rename(path.join(dir, 'extensions'), path.join(dir, 'gone'));
      assert.equal((await reconcile(host.deps(), { dir, revision: 'r2+local' })).status, 'refused');
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);
    });

    it('applies it with --allow-mass-removal', async () => {
      const dir = await appliedRepo();
      await writeFile(path.join(dir, 'extensions/office.yaml'), extensionsYaml(numbers(3)).replace(/ }\n/g, ', enabled: false }\n'));
      const out = await reconcile({ ...host.deps(), options: { ...host.deps().options, allowMassRemoval: true } }, { dir, revision: 'r2' });
      assert.equal(out.status, 'applied', out.error);
      assert.equal(out.removalAcknowledgedBy, '--allow-mass-removal');
      assert.deepEqual(host.asterisk.liveEndpoints(), []);
    });
  });

  describe('the commands', function () {
    this.timeout(60_000);
    let host: PbxHost;
    beforeEach(async () => {
      host = await startPbxHost();
    });
    afterEach(async () => {
      await host.stop();
    });

    /** The CLI as a child process, so that this process keeps serving the loopback Asterisk. */
    async function cli(args: string[]) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
      return { code, out, err };
    }

    it('plan and apply refuse a misspelt extensions folder with exit 1 and say how to acknowledge it; apply --allow-mass-removal applies it', async () => {
      const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/office.yaml': extensionsYaml(numbers(3)) });
      const settings = ['--settings', host.settingsFile];
      assert.equal((await cli(['apply', dir, ...settings])).code, 0);
      await mkdir(path.join(dir, 'extentions'));
      await rename(path.join(dir, 'extensions/office.yaml'), path.join(dir, 'extentions/office.yaml'));

      const plan = await cli(['plan', dir, ...settings]);
      assert.equal(plan.code, 1);
      assert.match(plan.err, /^extentions\/: warning: holds 1 YAML file that is not read .*; did you mean extensions\/\?$/m);
      assert.match(plan.out, /^REFUSED: apply would refuse this change: this change removes all 3 extensions of the PBX \(1001 1002 1003\): no phone would be left\.$/m);
      assert.match(plan.out, /^Nothing would be written or reloaded; if this is meant, acknowledge it: add the trailer "Allow-Mass-Removal: yes" to the commit message/m);
      assert.doesNotMatch(plan.out, /Asterisk would reload/);
      // The README shows this very output: every line it quotes is a line plan prints.
      const readme = await readFile('README.md', 'utf8');
      const quoted = /What `plan` shows for the misspelt folder[\s\S]*?```\n([\s\S]*?)```/.exec(readme)![1]!.split('\n');
      const printed = new Set(`${plan.err}${plan.out}`.split('\n'));
      for (const line of quoted.filter((l) => l && l !== '...' && !l.startsWith('$ ') && !l.startsWith('Plan for '))) {
        assert.ok(printed.has(line), `README line not printed by plan: ${line}`);
      }

      const json = await cli(['plan', dir, ...settings, '--json']);
      assert.equal(json.code, 1);
      const planned = JSON.parse(json.out);
      assert.equal(planned.ok, false);
      assert.deepEqual([planned.refused.removed, planned.refused.before, planned.refused.limit], [['1001', '1002', '1003'], 3, 10]);

      // render writes a folder, not the PBX: it renders, and says what apply would do.
      const out = await tempDir();
      await cp(path.join(host.configDir, 'pbx-agent'), path.join(out, 'pbx-agent'), { recursive: true });
      const render = await cli(['render', dir, '--out', out]);
      assert.equal(render.code, 0, render.err);
      assert.match(render.out, /^WARNING: apply would refuse this change against the files in .*: this change removes all 3 extensions of the PBX/m);

      const apply = await cli(['apply', dir, ...settings]);
      assert.equal(apply.code, 1);
      assert.match(apply.out, /^refused: revision \S+: this change removes all 3 extensions of the PBX/m);
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);

      const acknowledged = await cli(['plan', dir, ...settings, '--allow-mass-removal']);
      assert.equal(acknowledged.code, 0);
      assert.match(acknowledged.out, /^Mass removal acknowledged by --allow-mass-removal: /m);
      const forced = await cli(['apply', dir, ...settings, '--allow-mass-removal']);
      assert.equal(forced.code, 0, forced.err);
      assert.match(forced.out, /^applied: /m);
      assert.deepEqual(host.asterisk.liveEndpoints(), []);
    });

    it('sync refuses a pushed mass removal, applies it after a pushed commit with the trailer, and takes --allow-mass-removal', async () => {
      const remote = await GitRemote.create();
      await remote.commit({ 'pbx.yaml': BASE_PBX, 'extensions/office.yaml': extensionsYaml(numbers(3)) }, 'Three phones');
      await remote.push();
      await appendFile(host.settingsFile, `source:\n  url: file://${remote.bare}\n  branch: main\n`);
      await mkdir(host.stateDir, { recursive: true }); // as the bootstrap leaves it
      const settings = ['--settings', host.settingsFile];
      const first = await cli(['sync', ...settings]);
      assert.equal(first.code, 0, first.out + first.err);

      await remote.commit({ 'extensions/office.yaml': null, 'extensions/office.yml': extensionsYaml(numbers(1)) }, 'Keep only 1001');
      await remote.commit({ 'extensions/office.yml': null, 'Extensions/office.yaml': extensionsYaml(numbers(3)) }, 'Tidy up');
      await remote.push();
      const refused = await cli(['sync', ...settings]);
      assert.equal(refused.code, 1);
      assert.match(refused.out, /^refused: revision [0-9a-f]{12}: this change removes all 3 extensions/m);
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002', '1003']);

      await remote.commit({}, 'Remove every phone: the office moves\n\nAllow-Mass-Removal: yes');
      await remote.push();
      const acknowledged = await cli(['sync', ...settings]);
      assert.equal(acknowledged.code, 0, acknowledged.out + acknowledged.err);
      assert.deepEqual(host.asterisk.liveEndpoints(), []);

      await remote.commit({ 'Extensions/office.yaml': null, 'extensions/office.yaml': extensionsYaml(numbers(3)) }, 'Back');
      await remote.push();
      assert.equal((await cli(['sync', ...settings])).code, 0);
      await remote.commit({ 'extensions/office.yaml': null }, 'Again');
      await remote.push();
      assert.equal((await cli(['sync', ...settings])).code, 1);
      const forced = await cli(['sync', ...settings, '--allow-mass-removal']);
      assert.equal(forced.code, 0, forced.out + forced.err);
      assert.deepEqual(host.asterisk.liveEndpoints(), []);
    });
  });
});
