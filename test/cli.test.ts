import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { main } from '../agent/cli/main.js';
import type { Io } from '../agent/cli/output.js';
import { md5Credential } from '../agent/resolve/index.js';
import { BASE_EXTENSIONS, BASE_PBX, edit, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';

async function run(args: string[], stdin = '') {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`), err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`) };
  const code = await main(args, io, Readable.from([stdin]));
  return { code, out, err };
}

/** The real CLI as a child process, for what only a process shows: exit codes of usage errors. */
function runProcess(args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const INVALID = { 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': edit(BASE_EXTENSIONS, '"1001"', '"10a1"') };

describe('cli', () => {
  after(removeTempRepos);

  describe('validate', () => {
    it('accepts the example repo with exit 0 and a one-line summary', async () => {
      const r = await run(['validate', 'examples/config-repo']);
      assert.equal(r.code, 0);
      assert.equal(r.out, 'examples/config-repo: valid: 4 extensions (+1 disabled)\n');
      assert.equal(r.err, '');
    });

    it('lists each problem on stderr and exits 1', async () => {
      const dir = await makeRepo(INVALID);
      const r = await run(['validate', dir]);
      assert.equal(r.code, 1);
      assert.equal(
        r.err,
        'extensions/a.yaml:2:13: extensions[0].number: expected an extension number of 2 to 12 digits, e.g. "1001", found "10a1"\n' +
          `${dir}: invalid: 1 error, 0 warnings; nothing was rendered or applied\n`,
      );
    });

    it('gives machines JSON with every issue located', async () => {
      const r = await run(['validate', await makeRepo(INVALID), '--json']);
      assert.equal(r.code, 1);
      const json = JSON.parse(r.out);
      assert.equal(json.ok, false);
      assert.deepEqual(json.errors, [
        {
          severity: 'error',
          file: 'extensions/a.yaml',
          line: 2,
          column: 13,
          field: 'extensions[0].number',
          message: 'expected an extension number of 2 to 12 digits, e.g. "1001"',
          found: '10a1',
        },
      ]);
      assert.deepEqual(json.warnings, []);
    });

    it('gives machines the found value itself in JSON: text not quoted twice, numbers as numbers', async () => {
      const dir = await makeRepo({
        'pbx.yaml': edit(BASE_PBX, 'port_end: 20000', 'port_end: 10000'),
        'extensions/a.yaml': edit(BASE_EXTENSIONS, 'name: Alice Example', 'name: "Ana <ana@example.com>"'),
      });
      const json = JSON.parse((await run(['validate', dir, '--json'])).out);
      assert.deepEqual(
        json.errors.map((e: { field: string; found: unknown }) => [e.field, e.found]),
        [['extensions[0].name', 'Ana <ana@example.com>'], ['rtp.port_end', 10000]],
      );
    });

    it('shows a line or paragraph separator, a bidi override or a C1 control from the YAML as an escape, never raw', async () => {
      const dir = await makeRepo({
        'pbx.yaml': BASE_PBX,
        'extensions/a.yaml': edit(BASE_EXTENSIONS, 'name: Alice Example', 'name: "Ana\\u2028Bob\\u202eevil\\u0085"\n    "x\\u2029y": 1'),
      });
      const r = await run(['validate', dir]);
      assert.equal(r.code, 1);
      assert.ok(!/[\u2028\u2029\u202e\u0085]/.test(r.err), JSON.stringify(r.err));
      assert.match(r.err, /^extensions\/a\.yaml:3:11: extensions\[0\]\.name: expected a display name .*, found "Ana\\u2028Bob\\u202eevil\\u0085"$/m);
      assert.match(r.err, /^extensions\/a\.yaml:4:5: extensions\[0\]\["x\\u2029y"\]: unknown field "x\\u2029y"; expected one of: /m);
    });
  });

  describe('render', () => {
    it('writes the managed files with the layout of /etc/asterisk, readable by owner and group only', async () => {
      const out = await tempDir();
      const r = await run(['render', 'examples/config-repo', '--out', out, '--revision', 'r1']);
      assert.equal(r.code, 0, r.err);
      assert.equal(
        r.out,
        `Rendered examples/config-repo (revision r1, 4 extensions, 1 disabled) into ${out}\n` +
          '  create    pbx-agent/pjsip.conf       res_pjsip\n' +
          '  create    pbx-agent/extensions.conf  pbx_config\n' +
          '  create    pbx-agent/voicemail.conf   app_voicemail\n' +
          '  create    pbx-agent/rtp.conf         res_rtp_asterisk\n' +
          '  create    pbx-agent/confbridge.conf  app_confbridge\n' +
          'Extensions: added 1001 1002 1003 2001; changed -; removed -\n' +
          'Conference rooms: added 800; changed -; removed -\n' +
          'May need an Asterisk restart (apply checks the live transports after the reload): transport transport-udp is new\n' +
          'Asterisk would reload: res_rtp_asterisk, res_pjsip, app_voicemail, app_confbridge, pbx_config\n',
      );
      for (const rel of ['pbx-agent/pjsip.conf', 'pbx-agent/extensions.conf', 'pbx-agent/voicemail.conf', 'pbx-agent/rtp.conf', 'pbx-agent/confbridge.conf']) {
        assert.equal((await stat(path.join(out, rel))).mode & 0o777, 0o640, rel);
      }
      assert.equal(
        await readFile(path.join(out, 'pbx-agent/rtp.conf'), 'utf8'),
        await readFile('test/golden/example/pbx-agent/rtp.conf', 'utf8').then((t) => t.replace('revision golden', 'revision r1')),
      );
    });

    it('writes nothing and reloads nothing the second time, even for a new revision', async () => {
      const out = await tempDir();
      await run(['render', 'examples/config-repo', '--out', out, '--revision', 'r1']);
      const before = await stat(path.join(out, 'pbx-agent/pjsip.conf'));
      const r = await run(['render', 'examples/config-repo', '--out', out, '--revision', 'r2', '--json']);
      assert.equal(r.code, 0);
      const json = JSON.parse(r.out);
      assert.deepEqual(json.files.map((f: { action: string }) => f.action), ['unchanged', 'unchanged', 'unchanged', 'unchanged', 'unchanged']);
      assert.deepEqual(json.reloads, []);
      const after = await stat(path.join(out, 'pbx-agent/pjsip.conf'));
      assert.equal(after.mtimeMs, before.mtimeMs);
      assert.equal(after.ino, before.ino);
    });

    it('shows a diff of what changes, with credentials redacted', async () => {
      const out = await tempDir();
      const first = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS });
      await run(['render', first, '--out', out]);
      const second = await makeRepo({
        'pbx.yaml': BASE_PBX,
        'extensions/a.yaml': edit(BASE_EXTENSIONS, 'md5: 0123456789abcdef0123456789abcdef', 'md5: ffffffffffffffffffffffffffffffff\n    max_contacts: 5'),
      });
      const r = await run(['render', second, '--out', out, '--diff']);
      assert.equal(r.code, 0);
      assert.match(r.out, /^-max_contacts=3$/m);
      assert.match(r.out, /^\+max_contacts=5$/m);
      assert.match(r.out, /^-md5_cred=<redacted [0-9a-f]{8}>$/m);
      assert.match(r.out, /^\+md5_cred=<redacted [0-9a-f]{8}>$/m);
      assert.ok(!r.out.includes('ffffffff') && !r.out.includes('0123456789abcdef'));
      assert.match(r.out, /Asterisk would reload: res_pjsip\n$/);
    });

    it('writes nothing at all from an invalid repo and exits 1', async () => {
      const out = await tempDir();
      const r = await run(['render', await makeRepo(INVALID), '--out', out]);
      assert.equal(r.code, 1);
      assert.equal(await readFile(path.join(out, 'pbx-agent/rtp.conf'), 'utf8').catch(() => 'absent'), 'absent');
    });

    it('needs --external-address for external_address: auto when not on EC2, and uses it', async () => {
      const repo = await makeRepo({ 'pbx.yaml': edit(BASE_PBX, 'external_address: 203.0.113.10', 'external_address: auto'), 'extensions/a.yaml': BASE_EXTENSIONS });
      const out = await tempDir();
      const refused = await run(['render', repo, '--out', out]);
      assert.equal(refused.code, 1);
      assert.match(refused.err, /^pbx\.yaml: network\.external_address: is "auto" but the Elastic IP cannot be used: no Elastic IP was given; pass --external-address IP to render with it$/m);
      const ok = await run(['render', repo, '--out', out, '--external-address', '198.51.100.7']);
      assert.equal(ok.code, 0, ok.err);
      assert.match(await readFile(path.join(out, 'pbx-agent/pjsip.conf'), 'utf8'), /^external_media_address=198\.51\.100\.7$/m);
    });
  });

  describe('render --watch', () => {
    it('renders again when a file in the config repo changes, reports an invalid edit, and stops on SIGTERM', async () => {
      const repo = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': BASE_EXTENSIONS });
      const out = await tempDir();
      const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', 'render', repo, '--out', out, '--watch', '--revision', 'w'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const until = async (cond: () => boolean, what: string) => {
        const deadline = Date.now() + 20_000;
        while (!cond()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${stdout}\n${stderr}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      const watching = () => stdout.split('Watching').length - 1;
      await until(() => watching() === 1, 'the first render');
      assert.match(stdout, /^ {2}create {4}pbx-agent\/pjsip\.conf/m);
      await writeFile(path.join(repo, 'extensions/a.yaml'), BASE_EXTENSIONS.replace('Alice Example', 'Alice Renamed'));
      await until(() => watching() === 2, 'a render after the edit');
      assert.match(stdout, /^ {2}update {4}pbx-agent\/pjsip\.conf/m);
      assert.match(await readFile(path.join(out, 'pbx-agent/pjsip.conf'), 'utf8'), /^callerid="Alice Renamed" <1001>$/m);
      await writeFile(path.join(repo, 'extensions/a.yaml'), BASE_EXTENSIONS.replace('"1001"', '"10a1"'));
      await until(() => watching() === 3, 'a render after the bad edit');
      assert.match(stderr, /extensions\/a\.yaml:2:13: extensions\[0\]\.number: expected an extension number/);
      child.kill('SIGTERM');
      const code = await new Promise((r) => child.once('exit', r));
      assert.equal(code, 0);
    });
  });

  describe('schema', () => {
    it('prints the JSON Schema that is committed for editors, for pbx.yaml and for extension files', async () => {
      for (const which of ['pbx', 'extensions']) {
        const r = await run(['schema', which]);
        assert.equal(r.code, 0);
        assert.equal(r.out, await readFile(`schemas/${which}.schema.json`, 'utf8'), `schemas/${which}.schema.json is stale: npm run schema:write`);
        assert.equal(JSON.parse(r.out).additionalProperties, false);
      }
    });
  });

  describe('md5', () => {
    it('prints the md5 credential of a password read from stdin', async () => {
      const r = await run(['md5', '1001'], 'k7-Hq2mVx93Lp\n');
      assert.equal(r.code, 0);
      assert.equal(r.out, `md5: ${md5Credential('1001', 'asterisk', 'k7-Hq2mVx93Lp')}\n`);
    });
    it('refuses a weak password', async () => {
      const r = await run(['md5', '1001'], 'secret\n');
      assert.equal(r.code, 1);
      assert.equal(r.err, 'md5: the password is shorter than 12 characters; use at least 12 characters mixing letters and digits\n');
    });
  });

  describe('as a process', () => {
    it('exits 2 with a hint on usage errors', () => {
      const unknown = runProcess(['deploy']);
      assert.equal(unknown.code, 2);
      assert.equal(unknown.err, 'pbx-agent: unknown command "deploy"; see pbx-agent --help\nRun pbx-agent --help for usage.\n');
      const noOut = runProcess(['render', 'examples/config-repo']);
      assert.equal(noOut.code, 2);
      assert.match(noOut.err, /render: --out OUT is required/);
      const badFlag = runProcess(['validate', '--frobnicate']);
      assert.equal(badFlag.code, 2);
      assert.match(badFlag.err, /Unknown option '--frobnicate'/);
    });
    it('prints help with exit 0', () => {
      const r = runProcess(['--help']);
      assert.equal(r.code, 0);
      assert.match(r.out, /^ {2}pbx-agent validate \[DIR\] \[--json\]$/m);
    });

    it('answers a bad --revision as a usage error (exit 2) that says what a revision may be, without a stack trace', () => {
      const r = runProcess(['render', 'examples/config-repo', '--out', 'unused-out', '--revision', 'a;b']);
      assert.equal(r.code, 2);
      assert.equal(
        r.err,
        'pbx-agent: --revision: expected 1 to 64 letters, digits, ".", "_", "+" or "-" (e.g. a commit or v1.4), got "a;b"\n' +
          'Run pbx-agent render --help for usage.\n',
      );
    });

    it('refuses an --out that is a file, or lies inside one, before rendering anything', async () => {
      const file = path.join(await tempDir(), 'passwd');
      await writeFile(file, 'root:x:0:0::/root:/bin/sh\n');
      for (const out of [file, path.join(file, 'sub')]) {
        const r = runProcess(['render', 'examples/config-repo', '--out', out]);
        assert.equal(r.code, 2, r.err);
        assert.match(r.err, /^pbx-agent: --out .*: (is a file|is inside .*passwd, which is a file); expected a directory to render into \(created if missing\)$/m);
        assert.doesNotMatch(r.err, /^\s+at /m);
      }
      assert.equal(await readFile(file, 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
    });

    it('explains an unexpected failure in one line with exit 3, never with a stack trace', async () => {
      const out = await tempDir();
      // Where a managed file belongs there is a directory: reading it fails with EISDIR.
      await mkdir(path.join(out, 'pbx-agent/pjsip.conf'), { recursive: true });
      const r = runProcess(['render', 'examples/config-repo', '--out', out]);
      assert.equal(r.code, 3);
      assert.equal(r.err, `pbx-agent: render: cannot read ${path.join(out, 'pbx-agent/pjsip.conf')}: is a directory, not a file (EISDIR)\n`);
    });

    it('exits quietly with its own exit code when the reader of its output goes away (| head)', async () => {
      const out = await tempDir();
      const child = spawn(process.execPath, ['--import', 'tsx', 'agent/cli/main.ts', 'render', 'examples/config-repo', '--out', out, '--diff'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      // Nobody reads: every write the command makes meets a closed pipe (EPIPE).
      child.stdout.destroy();
      let err = '';
      child.stderr.on('data', (d) => (err += d));
      const code = await new Promise((resolve) => child.once('close', resolve));
      assert.equal(err, '');
      assert.equal(code, 0);
      assert.match(await readFile(path.join(out, 'pbx-agent/pjsip.conf'), 'utf8'), /^\[1001\]$/m, 'the files were still rendered');
    });

    it('prints the help of one command for COMMAND --help and help COMMAND', async () => {
      for (const args of [['render', '--help'], ['help', 'render'], ['render', '-h']]) {
        const r = await run(args);
        assert.equal(r.code, 0);
        assert.match(r.out, /^Usage: pbx-agent render \[DIR\] --out OUT /);
        assert.match(r.out, /^--watch {13}keep running and render again/m);
        assert.doesNotMatch(r.out, /pbx-agent validate|pbx-agent md5/);
      }
      const plan = await run(['plan', '--help']);
      assert.match(plan.out, /^Usage: pbx-agent plan \[DIR\]/);
    });

    it('holds --external-address to the rule of pbx.yaml: no private, CGNAT or loopback address', async () => {
      const out = await tempDir();
      for (const [address, kind] of [['10.0.0.1', 'a private (RFC 1918)'], ['100.64.1.1', 'a carrier-grade NAT (RFC 6598)'], ['127.0.0.1', 'a loopback']]) {
        for (const args of [['render', 'examples/config-repo', '--out', out], ['plan', 'examples/config-repo'], ['apply', 'examples/config-repo']]) {
          const r = await run([...args, '--external-address', address!]);
          assert.equal(r.code, 2, `${args[0]} ${address}`);
          assert.equal(
            r.err,
            `pbx-agent: --external-address ${address}: is ${kind} address; it must be the instance's public Elastic IP, otherwise phones outside the VPC get one-way audio\n` +
              `Run pbx-agent ${args[0]} --help for usage.\n`,
          );
        }
      }
      assert.equal(await readFile(path.join(out, 'pbx-agent/pjsip.conf'), 'utf8').catch(() => 'absent'), 'absent');
    });

    it('refuses an option the command does not take instead of ignoring it', async () => {
      const r = await run(['validate', '.', '--out', 'x']);
      assert.equal(r.code, 2);
      assert.equal(r.err, 'pbx-agent: validate does not take --out\nRun pbx-agent validate --help for usage.\n');
    });

    it('runs when started through a symlink of any name, in a folder whose name URLs would escape', async () => {
      // /usr/local/bin/pbx-agent and npm's bin link are symlinks: node runs the target, so the
      // module's URL and argv[1] differ; `#`, `%` and spaces differ again between a URL and a path.
      const dir = path.join(await tempDir('pbx-agent-bin-'), 'tools #1 %41 x');
      await mkdir(dir);
      const link = path.join(dir, 'pbx');
      await symlink(path.resolve('agent/cli/main.ts'), link);
      const version = spawnSync(process.execPath, ['--import', 'tsx', link, '--version'], { encoding: 'utf8' });
      assert.equal(version.stderr, '');
      assert.equal(version.stdout, `${JSON.parse(await readFile('package.json', 'utf8')).version}\n`);
      const invalid = spawnSync(process.execPath, ['--import', 'tsx', link, 'validate', await makeRepo(INVALID)], { encoding: 'utf8' });
      assert.equal(invalid.status, 1);
      assert.match(invalid.stderr, /invalid: 1 error/);
    });
  });
});
