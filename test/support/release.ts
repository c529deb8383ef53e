/**
 * The release tarball users install: `npm pack` of this checkout (built by the prepare script,
 * with its production dependencies bundled: package.json says bundleDependencies), as
 * pbx-agent-<version>.tgz.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './bootstrap-root.js';

const run = promisify(execFile);

export async function buildRelease(destination: string): Promise<string> {
  await mkdir(destination, { recursive: true });
  const { stdout } = await run('npm', ['pack', '--silent', '--pack-destination', destination], { cwd: REPO_ROOT, timeout: 600_000, maxBuffer: 16 << 20 });
  const file = stdout.trim().split('\n').pop()!;
  if (!/^pbx-agent-\d+\.\d+\.\d+\.tgz$/.test(file)) throw new Error(`npm pack printed ${file}, expected pbx-agent-<version>.tgz`);
  return path.join(destination, file);
}
