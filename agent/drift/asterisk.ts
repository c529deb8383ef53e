/**
 * Live Asterisk state against the applied configuration, on a schedule: every endpoint the agent
 * manages is live, the transports carry the advertised address and local_net, the RTP range is
 * the rendered one, and no endpoint is live that no config file defines any more (Asterisk kept
 * running an older configuration than the files hold). Someone reloading a broken hand-written
 * file, or an Asterisk that came up without the agent's config, shows up here.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AsteriskControl } from '../asterisk/control.js';
import { MANAGED_DIR } from '../managed-files.js';
import { comparePjsip } from '../plan/objects.js';
import { verifyLiveState, type Mismatch } from '../verify/index.js';

export async function findAsteriskDrift(
  asterisk: AsteriskControl,
  pjsipBody: string,
  rtpBody: string,
  /** Section names in the operator's own files: endpoints Asterisk may have besides the agent's. */
  operatorSections?: ReadonlySet<string>,
): Promise<Mismatch[]> {
  const result = await verifyLiveState(
    asterisk,
    [
      // Everything as "added" so that every managed endpoint must be present (no detail reads).
      { module: 'res_pjsip', before: '', after: pjsipBody },
      { module: 'res_rtp_asterisk', before: rtpBody, after: rtpBody },
    ],
    { detailLimit: 0 },
  );
  const mismatches = [...result.mismatches];
  if (operatorSections) {
    const managed = new Set(comparePjsip('', pjsipBody).added);
    const stale = (await asterisk.showEndpoints()).map((e) => e.name).filter((n) => !managed.has(n) && !operatorSections.has(n)).sort();
    for (const name of stale) mismatches.push({ object: `endpoint ${name}`, field: 'presence', expected: 'absent (no config file defines it)', actual: 'present' });
  }
  return mismatches;
}

/**
 * Every `[section]` name in the .conf files under the Asterisk config directory, except the
 * agent's own directory: a generous reading of what the operator defines by hand (templates
 * and other modules' sections included), so that only endpoints nobody defines count as stale.
 */
export async function operatorSectionNames(configDir: string): Promise<Set<string>> {
  const names = new Set<string>();
  const visit = async (dir: string, depth: number): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const abs = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (depth < 2 && !(dir === configDir && e.name === MANAGED_DIR)) await visit(abs, depth + 1);
      } else if (e.name.endsWith('.conf') || e.isSymbolicLink()) {
        if (path.relative(configDir, abs) === 'rtp.conf') continue; // the symlink to the agent's file
        const text = await readFile(abs, 'utf8').catch(() => '');
        for (const m of text.matchAll(/^\s*\[([^\]\r\n]+)\]/gm)) names.add(m[1]!.trim());
      }
    }
  };
  await visit(configDir, 0);
  return names;
}
