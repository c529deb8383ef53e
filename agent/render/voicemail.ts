/**
 * voicemail.conf: a box for every extension that asks for one, in the agent's own voicemail
 * context so that boxes kept by hand in other contexts are untouched.
 */
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';

export const VOICEMAIL_CONTEXT = 'pbx-agent';

export function renderVoicemailConf(state: ResolvedState): string {
  const conf = new ConfText();
  conf.section(VOICEMAIL_CONTEXT);
  for (const ext of state.extensions) {
    if (!ext.voicemail) continue;
    // box => password,full name,email. The password is left empty: boxes are reached through
    // VoiceMailMain(...,s) from the owner's own authenticated phone.
    const fields = ['', ext.name ?? ext.number];
    if (ext.voicemail.email !== undefined) fields.push(ext.voicemail.email);
    conf.arrow(ext.number, fields.join(','));
  }
  return conf.toString();
}
