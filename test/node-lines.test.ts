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

      /** An ES module script run by this line's node under the unit's flags; its stdout, parsed. */
      function runUnderUnitFlags<T>(script: string): T {
        const r = spawnSync(node, [...flags, '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, ...env } });
        assert.equal(r.status, 0, r.stderr);
        return JSON.parse(r.stdout) as T;
      }

      /**
       * A run's worth of garbage (about 50 MB of small objects), dropped, optionally collected by
       * a plain gc() first (as V8 does on its own), then the daemon's after-run collection.
       */
      function trimAfterRun(plainGcFirst: boolean) {
        return runUnderUnitFlags<{ options: boolean; collected: boolean; rssStart: number; rssPeak: number; rssBefore: number; rssAfter: number; heapBefore: number; heapAfter: number }>(`
          import { HeapTrimmer, takesGcOptions } from ${JSON.stringify(new URL('../agent/daemon/heap.ts', import.meta.url).href)};
          const mb = (n) => Math.round(n / 1048576);
          const trimmer = new HeapTrimmer();
          const rssStart = process.memoryUsage().rss;
          let run = [];
          for (let i = 0; i < 1_000_000; i++) run.push({ a: 'x'.repeat(20) + i, b: [i, i + 1] });
          const rssPeak = process.memoryUsage().rss;
          run = null;
          ${plainGcFirst ? 'gc();' : ''}
          const rss = process.memoryUsage().rss, heap = process.memoryUsage().heapUsed;
          const collected = trimmer.afterRun();
          process.stdout.write(JSON.stringify({ options: takesGcOptions(), collected, rssStart: mb(rssStart), rssPeak: mb(rssPeak), rssBefore: mb(rss), rssAfter: mb(process.memoryUsage().rss), heapBefore: mb(heap), heapAfter: mb(process.memoryUsage().heapUsed) }));
        `);
      }

      it('still hands pages back when V8 has already collected the run\'s objects on its own', () => {
        // The live heap is back where it was, so only the process's RSS shows what is left resident.
        // The plain gc() sometimes hands pages back itself, so what is checked is where RSS ends:
        // within a quarter of what the run took (~265 MB) of where it started.
        const m = trimAfterRun(true);
        assert.equal(m.collected, true, JSON.stringify(m));
        if (m.options) assert.ok(m.rssAfter - m.rssStart < (m.rssPeak - m.rssStart) / 4, `RSS is back near where it started: ${JSON.stringify(m)}`);
      });

      it("loads the whole daemon without Node's bundled undici (several MB resident that nothing uses)", () => {
        // An ESM import of node:http reads its lazy WebSocket getters on Node.js 22 and later,
        // which compiles undici; agent/node-http.ts is the way in that does not.
        const undici = runUnderUnitFlags<string[]>(`
          await import(${JSON.stringify(new URL('../agent/cli/commands.ts', import.meta.url).href)});
          await import(${JSON.stringify(new URL('../agent/daemon/index.ts', import.meta.url).href)});
          await import(${JSON.stringify(new URL('../agent/asterisk/ari.ts', import.meta.url).href)});
          process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici'))));
        `);
        assert.deepEqual(undici, []);
      });

      it("hands a dropped heap's pages back to the system after a run, under the unit's flags", () => {
        // The daemon's after-run collection. Where V8 takes gc options (Node.js 22 and later) RSS
        // must fall by at least half of what was dropped; Node.js 20's plain gc() frees the objects only.
        const m = trimAfterRun(false);
        const shown = JSON.stringify(m);
        assert.equal(m.collected, true, shown);
        assert.equal(m.options, major >= 22, shown);
        assert.ok(m.heapBefore - m.heapAfter >= 25, `the collection freed the dropped objects: ${shown}`);
        if (m.options) assert.ok(m.rssBefore - m.rssAfter >= 20, `RSS fell with the heap: ${shown}`);
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
