/**
 * What the README promises, held against what the code does: every log event documented, the md5
 * walk-through, where the command is installed, what validate leaves to the host, and the trunk
 * example wired through `includes`.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { main } from '../agent/cli/main.js';
import type { Io } from '../agent/cli/output.js';
import { EVENTS } from '../agent/log.js';
import { reconcile } from '../agent/reconcile.js';
import { BASE_PBX, edit, extensionsYaml, makeRepo, removeTempRepos, tempDir } from './support/config-repo.js';
import { startPbxHost } from './support/pbx-host.js';

const readme = () => readFile('README.md', 'utf8');

async function run(args: string[], stdin = '') {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => (out += t.endsWith('\n') ? t : `${t}\n`), err: (t) => (err += t.endsWith('\n') ? t : `${t}\n`) };
  const code = await main(args, io, Readable.from([stdin]));
  return { code, out, err };
}

/** The fenced code block that follows `marker` in the README. */
function blockAfter(text: string, marker: string): string {
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `README has no ${JSON.stringify(marker)}`);
  const m = /```[a-z]*\n([\s\S]*?)```/.exec(text.slice(at));
  assert.ok(m, `no code block after ${JSON.stringify(marker)}`);
  return m[1]!.replace(/^ {3}/gm, '');
}

describe('README', () => {
  after(removeTempRepos);

  it('documents every log event the agent writes in its event table, and no other', async () => {
    const section = (await readme()).split('## Log events')[1]!.split('\n## ')[0]!;
    const documented = new Set<string>();
    for (const row of section.split('\n').filter((l) => l.startsWith('| `'))) {
      for (const m of row.split('|')[1]!.matchAll(/`([a-z_]+\.[a-z_]+)`/g)) documented.add(m[1]!);
    }
    assert.deepEqual([...EVENTS].filter((e) => !documented.has(e)), [], 'logged but not documented');
    assert.deepEqual([...documented].filter((e) => !(EVENTS as readonly string[]).includes(e)), [], 'documented but never logged');
  });

  it('walks through pbx-agent md5 with a password and the line the command really prints for it', async () => {
    const block = blockAfter(await readme(), 'Pick a password that passes the policy');
    const m = /^\$ printf '%s\\n' '([^']+)' \| pbx-agent md5 (\d+)\nmd5: ([0-9a-f]{32})\n/m.exec(block);
    assert.ok(m, block);
    const r = await run(['md5', m[2]!], `${m[1]}\n`);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, `md5: ${m[3]}\n`);
  });

  it('names the command the bootstrap installs on the host, what it runs, and the file npx runs from a clone', async () => {
    const text = await readme();
    const bootstrap = await readFile('bootstrap/bootstrap.sh', 'utf8');
    // The launcher the bootstrap writes to /usr/local/bin/pbx-agent: `exec NODE CLI "$@"`.
    const launcher = /exec %s (\S+) "\$@"\\n' "\$NODE_BIN" >"\$WORK\/launcher"/.exec(bootstrap);
    assert.ok(launcher, 'the bootstrap writes a launcher');
    assert.match(bootstrap, /ensure_file \/usr\/local\/bin\/pbx-agent root root 0755 <"\$WORK\/launcher"/);
    assert.ok(text.includes('`/usr/local/bin/pbx-agent` that runs `' + launcher[1] + '`'), `README says /usr/local/bin/pbx-agent runs ${launcher[1]}`);
    const bin = JSON.parse(await readFile('package.json', 'utf8')).bin['pbx-agent'];
    assert.equal(launcher[1], `/opt/pbx-agent/${bin}`, 'the host runs the file npx runs');
    assert.match(text, /`npx pbx-agent validate \.\.\/pbx-config`/);
  });

  it('quotes the error a missing secret gives on the host, for a repo that validate accepts', async () => {
    const quoted = /`(extensions\/a\.yaml:2:5: secret: secret "alice" [^`]+)`/.exec(await readme());
    assert.ok(quoted, 'the README quotes the message');
    const dir = await makeRepo({ 'pbx.yaml': BASE_PBX, 'extensions/a.yaml': 'extensions:\n  - number: "1001"\n    name: Alice Example\n    secret: alice\n' });
    assert.equal((await run(['validate', dir])).code, 0);
    const render = await run(['render', dir, '--out', await tempDir(), '--secrets-dir', '/etc/pbx-agent/secrets']);
    assert.equal(render.code, 1);
    assert.equal(render.err.split('\n')[0], quoted[1]);
  });

  it("gives a trunk example that loads beside the agent's files and that internal reaches through includes", async () => {
    const section = (await readme()).split('## Reaching the outside world')[1]!.split('\n## ')[0]!;
    const blocks = [...section.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]!);
    assert.equal(blocks.length, 3, 'pjsip.conf, extensions.conf and pbx.yaml');
    const [pjsipConf, extensionsConf, yaml] = blocks as [string, string, string];
    const host = await startPbxHost({ operatorPjsip: pjsipConf });
    try {
      await writeFile(path.join(host.configDir, 'extensions.conf'), extensionsConf);
      const includes = /includes: \[([a-z-]+)\]/.exec(yaml)![1]!;
      const dir = await makeRepo({ 'pbx.yaml': edit(BASE_PBX, 'internal: {}', `internal: { includes: [${includes}] }`), 'extensions/a.yaml': extensionsYaml(['1001']) });
      const out = await reconcile(host.deps(), { dir, revision: 'r1' });
      assert.equal(out.status, 'applied', out.error);
      const control = host.deps().asterisk;
      assert.ok((await control.command('dialplan show internal')).some((l) => /Include => +'outbound'/.test(l)));
      assert.ok((await control.command('dialplan show outbound')).some((l) => l.includes("'_0X.' =>") && l.includes('Dial(PJSIP/${EXTEN}@mytrunk,60)')));
      assert.ok((await control.command('dialplan show from-trunk')).some((l) => l.includes('Goto(internal,1001,1)')));
      assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', 'mytrunk']);
    } finally {
      await host.stop();
    }
  });
});
