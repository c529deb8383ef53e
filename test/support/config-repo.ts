/**
 * Throw-away config repos on disk for tests: a known-good pbx.yaml (line numbers below are what
 * tests assert against) plus whatever extension files a test writes.
 */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Line numbers matter: tests name them in expected messages. */
export const BASE_PBX = `version: 1
network:
  external_address: 203.0.113.10
  local_net: [172.31.0.0/16]
  transports:
    udp: { port: 5060 }
rtp:
  port_start: 10000
  port_end: 20000
codec_profiles:
  voice: { audio: [opus, ulaw] }
  video: { audio: [opus], video: [h264, vp8] }
defaults:
  codec_profile: voice
dialplan:
  contexts:
    internal: {}
`;

/** One good extension file; line 2 is the first extension's `- number:` line. */
export const BASE_EXTENSIONS = `extensions:
  - number: "1001"
    name: Alice Example
    md5: 0123456789abcdef0123456789abcdef
`;

const made: string[] = [];

export async function makeRepo(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pbx-agent-repo-'));
  made.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), text);
  }
  return dir;
}

export async function tempDir(prefix = 'pbx-agent-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function removeTempRepos(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** A deterministic md5 credential per extension number (tests only; not a real digest). */
export const testMd5 = (n: string) => n.padStart(4, '0').repeat(8);

/** An extensions file: one entry per number, or per `{ number, extra }` with extra YAML fields. */
export function extensionsYaml(entries: ReadonlyArray<string | { number: string; extra?: string }>): string {
  return (
    'extensions:\n' +
    entries
      .map((e) => (typeof e === 'string' ? { number: e } : e))
      .map((e) => `  - { number: "${e.number}", name: User ${e.number}, md5: ${testMd5(e.number)}${e.extra ? `, ${e.extra}` : ''} }\n`)
      .join('')
  );
}

/** Replaces exactly one occurrence, failing loudly if the base text changed under the test. */
export function edit(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0) throw new Error(`edit: ${JSON.stringify(from)} must occur exactly once`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}
