/**
 * voicemail.conf: a box for every extension that asks for one, in the agent's own voicemail
 * context so that boxes kept by hand in other contexts are untouched.
 */
import { createHmac } from 'node:crypto';
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';

export const VOICEMAIL_CONTEXT = 'pbx-agent';

/**
 * The box's PIN: nobody is meant to type it (the owner reaches the box through *97 without one),
 * but an empty PIN would open the box to any VoiceMailMain() that can reach this context
 * (app_voicemail vm_authenticate skips the prompt for a blank password). Derived from the
 * extension's credential digest, so it is stable across renders and known only to whoever could
 * already register as the phone. The leading "-" makes it unchangeable: a PIN change from the
 * phone menu would otherwise make Asterisk rewrite this managed file (voicemail.conf.sample).
 */
export function voicemailPin(number: string, credentialHash: string): string {
  const digest = createHmac('sha256', credentialHash).update(`voicemail-pin:${number}`).digest();
  return `-${(digest.readUInt32BE(0) % 100_000_000).toString().padStart(8, '0')}`;
}

export function renderVoicemailConf(state: ResolvedState): string {
  const conf = new ConfText();
  conf.section(VOICEMAIL_CONTEXT);
  for (const ext of state.extensions) {
    if (!ext.voicemail) continue;
    // box => PIN,full name,email (voicemail.conf.sample).
    const fields = [voicemailPin(ext.number, ext.credential.hash), ext.name ?? ext.number];
    if (ext.voicemail.email !== undefined) fields.push(ext.voicemail.email);
    conf.arrow(ext.number, fields.join(','));
  }
  return conf.toString();
}
