/**
 * The daemon under the systemd unit's node flags, on every Node.js line it supports: the official
 * binaries of 22, 24 and 26 (test/support/node-lines.ts) and this process's own 20. A flag that one
 * line rejects (Node 24 refuses --no-expose-wasm) or that breaks a module on it (--lite-mode on
 * Node 22 turned WebAssembly off under undici) would leave the unit failing on that line only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { BASE_PBX, extensionsYaml, removeTempRepos } from './support/config-repo.js';
import { daemonSettings, DaemonProcess, freePort, WEBHOOK_SECRET } from './support/daemon-process.js';
import { GitRemote } from './support/git-remote.js';
import { AGENT_NODE_MAJORS, nodeBinary } from './support/node-lines.js';
import { startPbxHost, type PbxHost } from './support/pbx-host.js';
import { unitNodeFlags } from './support/unit-flags.js';
import { post, pushBody, signedHeaders } from './support/webhook-client.js';

describe('the unit on every supported Node.js line', function () {
  this.timeout(300_000);
  const { flags, env } = unitNodeFlags();
  after(removeTempRepos);

  for (const major of AGENT_NODE_MAJORS) {
    describe(`Node.js ${major}`, () => {
      let node: string;
      before(async () => {
        node = (await nodeBinary(major)).node;
      });

      it("accepts the unit's node flags without a warning, and keeps WebAssembly", () => {
        const r = spawnSync(node, [...flags, '-e', 'process.stdout.write(`${process.versions.node.split(".")[0]} ${typeof WebAssembly}`)'], { encoding: 'utf8' });
        assert.equal(r.stderr, '');
        assert.equal(r.status, 0);
        assert.equal(r.stdout, `${major} object`);
      });

      describe('the daemon', () => {
        let host: PbxHost;
        let remote: GitRemote;
        let daemon: DaemonProcess | undefined;
        before(async () => {
          host = await startPbxHost();
          remote = await GitRemote.create();
          await remote.commit({ 'pbx.yaml': BASE_PBX, 'extensions/staff.yaml': extensionsYaml(['1001']) }, 'initial');
          await remote.push();
          await remote.serve();
        });
        after(async () => {
          await daemon?.stop();
          await remote.stopServing();
          await host.stop();
        });

        it('starts, applies, takes a push through the webhook and stops on SIGTERM with exit 0', async () => {
          const port = await freePort();
          daemon = DaemonProcess.start(await daemonSettings(host, { url: remote.url, webhookPort: port }), {
            node,
            nodeFlags: flags,
            env: { ...process.env, ...env },
          });
          assert.equal((await daemon.finished(1)).status, 'applied');
          const commit = await remote.commit({ 'extensions/staff.yaml': extensionsYaml(['1001', '1002']) });
          await remote.push();
          const body = pushBody('main', commit);
          assert.equal((await post(port, body, signedHeaders('github', body, WEBHOOK_SECRET))).status, 202);
          const second = await daemon.finished(2);
          assert.equal(second.status, 'applied');
          assert.equal(second.revision, commit.slice(0, 12));
          assert.deepEqual(host.asterisk.liveEndpoints(), ['1001', '1002']);
          assert.equal(await daemon.stop(), 0);
          daemon = undefined;
        });
      });
    });
  }
});
