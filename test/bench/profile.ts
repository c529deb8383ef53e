/**
 * Where validate+render time goes at a given size, for the findings behind a budget that is OVER.
 *
 *   node --import tsx test/bench/profile.ts [N=10000] [LOOPS=5]
 *       times each sub-stage of load and render directly (median of LOOPS after 1 warm-up);
 *   node --cpu-prof --cpu-prof-dir DIR --import tsx test/bench/profile.ts N LOOPS pipeline
 *       only loops renderConfigRepo (what the bench measures), for a clean V8 profile; then
 *   node test/bench/cpuprofile-summary.mjs DIR/*.cpuprofile
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ExtensionsFile, SiteFile } from '../../schemas/config-repo.js';
import { checkExtensions, checkSite, type ExtensionEntry } from '../../agent/load/cross-check.js';
import { loadDesiredState, readConfigRepo } from '../../agent/load/index.js';
import { validateFile } from '../../agent/load/validate.js';
import { parseYaml } from '../../agent/load/yaml-document.js';
import { RENDERERS, renderAsteriskFiles } from '../../agent/render/index.js';
import { MANAGED_FILES, hashBody } from '../../agent/managed-files.js';
import { renderConfigRepo } from '../../agent/pipeline.js';
import { resolveDesiredState, DirectorySecretStore } from '../../agent/resolve/index.js';
import { generateConfigRepo } from './gen-repo.js';
import { median } from './stats.js';
import { formatTable, ms } from './table.js';

const n = Number(process.argv[2] ?? 10_000);
const loops = Number(process.argv[3] ?? 5);
const mode = process.argv[4] ?? 'stages';
const root = await mkdtemp(path.join(os.tmpdir(), 'pbx-agent-profile-'));
try {
  const repo = await generateConfigRepo(path.join(root, 'repo'), n);
  const snapshot = await readConfigRepo(repo.dir);
  const host = { secrets: new DirectorySecretStore(path.join(root, 'none')), elasticIp: async () => ({ problem: 'n/a' }) };

  const samples = new Map<string, number[]>();
  const time = <T>(name: string, fn: () => T): T => {
    const t0 = performance.now();
    const r = fn();
    const list = samples.get(name) ?? [];
    list.push(performance.now() - t0);
    samples.set(name, list);
    return r;
  };

  if (mode === 'pipeline') {
    for (let loop = 0; loop < loops + 1; loop++) {
      const outcome = await renderConfigRepo(repo.dir, host, 'bench');
      if (!outcome.files) throw new Error('render failed');
      if (loop === 0) samples.clear();
      for (const [k, v] of Object.entries(outcome.timings)) samples.set(k, [...(samples.get(k) ?? []), v]);
    }
  }
  for (let loop = 0; mode === 'stages' && loop < loops + 1; loop++) {
    if (loop === 1) samples.clear(); // the first loop is the warm-up
    const siteParsed = time('load: parseYaml pbx.yaml', () => parseYaml(snapshot.site!).parsed!);
    const site = time('load: validateFile pbx.yaml (zod)', () => validateFile(siteParsed, SiteFile).data!);
    const entries: ExtensionEntry[] = [];
    const parsedFiles = time('load: parseYaml extensions/*.yaml', () => snapshot.extensionFiles.map((f) => parseYaml(f).parsed!));
    time('load: validateFile extensions (zod)', () => {
      for (const parsed of parsedFiles) {
        validateFile(parsed, ExtensionsFile).data!.extensions.forEach((ext, i) => entries.push({ data: ext, parsed, path: ['extensions', i] }));
      }
    });
    time('load: checkSite', () => checkSite(site, siteParsed));
    time('load: checkExtensions', () => checkExtensions(site, siteParsed, entries));
    const loaded = time('load: loadDesiredState (all of the above + buildState)', () => loadDesiredState(snapshot));
    const { resolved } = await resolveDesiredState(loaded.state!, host, loaded.locate);
    for (const spec of MANAGED_FILES) {
      const body = time(`render: ${spec.path}`, () => RENDERERS[spec.module](resolved!));
      time(`render: sha256 ${spec.path}`, () => hashBody(body));
    }
    time('render: renderAsteriskFiles (all)', () => renderAsteriskFiles(resolved!, 'bench'));
  }
  console.log(
    formatTable({
      title: `Sub-stages at ${n} extensions (median of ${loops} after 1 warm-up)`,
      columns: [{ header: 'stage', align: 'left' }, { header: 'ms' }],
      rows: [...samples].map(([name, xs]) => [name, ms(median(xs))]),
    }),
  );
} finally {
  await rm(root, { recursive: true, force: true });
}
