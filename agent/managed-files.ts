/**
 * The managed files: the vocabulary every stage shares. Which files the agent owns, which
 * Asterisk module reads each, in what order modules reload, where each lives, and the header
 * that marks it. Render fills them; plan, apply, verify, drift, the daemon and `check` read them
 * back through the helpers here and nowhere else.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** The one directory under /etc/asterisk the agent writes in. */
export const MANAGED_DIR = 'pbx-agent';

/** The Asterisk module that reads a file, i.e. what `Reload` must name when it changes. */
export type AsteriskModule = 'res_pjsip' | 'res_rtp_asterisk' | 'pbx_config' | 'app_voicemail' | 'app_confbridge';

export interface ManagedFileSpec {
  /** Path relative to the Asterisk config directory (/etc/asterisk). */
  path: string;
  module: AsteriskModule;
  /** The file in /etc/asterisk that pulls this one in (`#tryinclude`) or is a symlink to it. */
  usedBy: { file: string; how: 'tryinclude' | 'symlink' };
}

/**
 * Every managed file lives in /etc/asterisk/pbx-agent/, the only place the agent writes.
 * Hand-maintained parts of /etc/asterisk keep working: pjsip.conf, extensions.conf,
 * voicemail.conf and confbridge.conf stay the operator's and pull the agent's files in with
 * `#tryinclude` (a missing file is then no error). rtp.conf cannot be shared that way (for a key given twice Asterisk 20
 * takes the first), so /etc/asterisk/rtp.conf is a symlink to the agent's file.
 */
export const MANAGED_FILES: readonly ManagedFileSpec[] = [
  { path: 'pbx-agent/pjsip.conf', module: 'res_pjsip', usedBy: { file: 'pjsip.conf', how: 'tryinclude' } },
  { path: 'pbx-agent/extensions.conf', module: 'pbx_config', usedBy: { file: 'extensions.conf', how: 'tryinclude' } },
  { path: 'pbx-agent/voicemail.conf', module: 'app_voicemail', usedBy: { file: 'voicemail.conf', how: 'tryinclude' } },
  { path: 'pbx-agent/rtp.conf', module: 'res_rtp_asterisk', usedBy: { file: 'rtp.conf', how: 'symlink' } },
  { path: 'pbx-agent/confbridge.conf', module: 'app_confbridge', usedBy: { file: 'confbridge.conf', how: 'tryinclude' } },
];

/**
 * The order modules reload in: RTP settings before the endpoints that use them, endpoints before
 * the mailboxes and the dialplan that name them, so that no reload points at something missing.
 */
export const RELOAD_ORDER: readonly AsteriskModule[] = ['res_rtp_asterisk', 'res_pjsip', 'app_voicemail', 'app_confbridge', 'pbx_config'];

/** `modules` (any order, duplicates allowed) in reload order. */
export function inReloadOrder(modules: Iterable<AsteriskModule>): AsteriskModule[] {
  const wanted = new Set(modules);
  return RELOAD_ORDER.filter((m) => wanted.has(m));
}

export function managedFileOf(module: AsteriskModule): ManagedFileSpec {
  const spec = MANAGED_FILES.find((f) => f.module === module);
  if (!spec) throw new Error(`no managed file for module ${module}`);
  return spec;
}

export const HEADER_FIRST_LINE = '; Managed by pbx-agent. Do not edit: changes here are overwritten on the next';

export function renderHeader(spec: ManagedFileSpec, revision: string): string {
  const lines = [
    HEADER_FIRST_LINE,
    '; reconcile and reported as drift. Edit the YAML in the config repo and push instead.',
    `; Rendered from config revision ${revision}.`,
  ];
  lines.push(
    spec.usedBy.how === 'tryinclude'
      ? `; Pulled in by /etc/asterisk/${spec.usedBy.file}: #tryinclude ${spec.path}`
      : `; Read through the symlink /etc/asterisk/${spec.usedBy.file} -> ${spec.path}`,
  );
  return lines.join('\n') + '\n\n';
}

/** Splits a managed file into header and body; a file without our header is all body. */
export function splitManagedText(text: string): { header: string; body: string } {
  if (!text.startsWith(HEADER_FIRST_LINE)) return { header: '', body: text };
  const end = text.indexOf('\n\n');
  return end < 0 ? { header: text, body: '' } : { header: text.slice(0, end + 2), body: text.slice(end + 2) };
}

export function hashBody(body: string): string {
  return createHash('sha256').update(body).digest('hex');
}

/** The managed files' texts (path → text, undefined = absent), as they are on disk in `configDir`. */
export async function readManagedTexts(configDir: string): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const spec of MANAGED_FILES) {
    out.set(spec.path, await readFile(path.join(configDir, spec.path), 'utf8').catch(() => undefined));
  }
  return out;
}

