/**
 * render: ResolvedState → the exact text of every managed Asterisk file. Pure and deterministic:
 * the same state and revision give the same bytes, so a hash tells whether anything changed.
 */
import { hashBody, MANAGED_FILES, renderHeader, type AsteriskModule } from '../managed-files.js';
import type { ResolvedState } from '../model.js';
import { renderConfbridgeConf } from './confbridge.js';
import { renderExtensionsConf } from './extensions.js';
import { PJSIP_MEMO, renderPjsipConf } from './pjsip.js';
import { renderRtpConf } from './rtp.js';
import { renderVoicemailConf } from './voicemail.js';

export { renderConfbridgeConf, renderExtensionsConf, renderPjsipConf, renderRtpConf, renderVoicemailConf };

/** Which render function fills each managed file (agent/managed-files.ts lists the files). */
export const RENDERERS: Record<AsteriskModule, (state: ResolvedState) => string> = {
  res_pjsip: renderPjsipConf,
  pbx_config: renderExtensionsConf,
  app_voicemail: renderVoicemailConf,
  res_rtp_asterisk: renderRtpConf,
  app_confbridge: renderConfbridgeConf,
};

/**
 * Between runs (the daemon, once a run is over): keeps what rendering caches for the next run
 * compressed. Nothing rendered changes by it.
 */
export function compactRenderCaches(): Promise<void> {
  return PJSIP_MEMO.compact();
}

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

/**
 * What a revision in a header may be: a commit, a tag, `unversioned`, `abc123+local`. It goes into
 * a comment line, so nothing that could end the line or the comment.
 */
export const REVISION_PATTERN = /^[A-Za-z0-9._+-]{1,64}$/;

export function renderAsteriskFiles(state: ResolvedState, revision: string): RenderedFile[] {
  if (!REVISION_PATTERN.test(revision)) throw new Error(`invalid revision ${JSON.stringify(revision)}`);
  return MANAGED_FILES.map((spec) => {
    const body = RENDERERS[spec.module](state);
    const text = renderHeader(spec, revision) + body;
    if (spec.module === 'res_pjsip') PJSIP_MEMO.moveTo(text, body);
    return { path: spec.path, module: spec.module, text, body, bodyHash: hashBody(body) };
  });
}
