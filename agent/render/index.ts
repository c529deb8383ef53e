/**
 * render: ResolvedState → the exact text of every managed Asterisk file. Pure and deterministic:
 * the same state and revision give the same bytes, so a hash tells whether anything changed.
 */
import { createHash } from 'node:crypto';
import type { ResolvedState } from '../model.js';
import { renderExtensionsConf } from './extensions.js';
import { renderPjsipConf } from './pjsip.js';
import { renderRtpConf } from './rtp.js';
import { renderVoicemailConf } from './voicemail.js';

export { renderExtensionsConf, renderPjsipConf, renderRtpConf, renderVoicemailConf };

/** The Asterisk module that reads a file, i.e. what `Reload` must name when it changes. */
export type AsteriskModule = 'res_pjsip' | 'res_rtp_asterisk' | 'pbx_config' | 'app_voicemail';

export interface ManagedFileSpec {
  /** Path relative to the Asterisk config directory (/etc/asterisk). */
  path: string;
  module: AsteriskModule;
  /** The file in /etc/asterisk that pulls this one in (`#tryinclude`) or is a symlink to it. */
  usedBy: { file: string; how: 'tryinclude' | 'symlink' };
  render(state: ResolvedState): string;
}

/**
 * Every managed file lives in /etc/asterisk/pbx-agent/, the only place the agent writes.
 * Hand-maintained parts of /etc/asterisk keep working: pjsip.conf, extensions.conf and
 * voicemail.conf stay the operator's and pull the agent's files in with `#tryinclude` (a missing
 * file is then no error). rtp.conf cannot be shared that way (for a key given twice Asterisk 20
 * takes the first), so /etc/asterisk/rtp.conf is a symlink to the agent's file.
 */
export const MANAGED_FILES: readonly ManagedFileSpec[] = [
  { path: 'pbx-agent/pjsip.conf', module: 'res_pjsip', usedBy: { file: 'pjsip.conf', how: 'tryinclude' }, render: renderPjsipConf },
  { path: 'pbx-agent/extensions.conf', module: 'pbx_config', usedBy: { file: 'extensions.conf', how: 'tryinclude' }, render: renderExtensionsConf },
  { path: 'pbx-agent/voicemail.conf', module: 'app_voicemail', usedBy: { file: 'voicemail.conf', how: 'tryinclude' }, render: renderVoicemailConf },
  { path: 'pbx-agent/rtp.conf', module: 'res_rtp_asterisk', usedBy: { file: 'rtp.conf', how: 'symlink' }, render: renderRtpConf },
];

export interface RenderedFile {
  path: string;
  module: AsteriskModule;
  /** Header + body: the bytes to write. */
  text: string;
  /** Everything after the header. Whether a file changed is decided on the body alone. */
  body: string;
  /** sha256 of the body, hex. */
  bodyHash: string;
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

/**
 * What a revision in a header may be: a commit, a tag, `unversioned`, `abc123+local`. It goes into
 * a comment line, so nothing that could end the line or the comment.
 */
export const REVISION_PATTERN = /^[A-Za-z0-9._+-]{1,64}$/;

export function renderAsteriskFiles(state: ResolvedState, revision: string): RenderedFile[] {
  if (!REVISION_PATTERN.test(revision)) throw new Error(`invalid revision ${JSON.stringify(revision)}`);
  return MANAGED_FILES.map((spec) => {
    const body = spec.render(state);
    return { path: spec.path, module: spec.module, text: renderHeader(spec, revision) + body, body, bodyHash: hashBody(body) };
  });
}
