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
  return formatPin(pinValue(number, credentialHash));
}

function pinValue(number: string, credentialHash: string): number {
  return createHmac('sha256', credentialHash).update(`voicemail-pin:${number}`).digest().readUInt32BE(0) % 100_000_000;
}

function formatPin(value: number): string {
  return `-${value.toString().padStart(8, '0')}`;
}

/**
 * The previous render's PINs, by box and credential. An HMAC costs ~10 µs under the unit's node
 * flags (no optimizing compiler), ~5 ms a render for 500 boxes, and a push nearly always changes
 * one extension of many. Only the latest render's boxes are kept, as small integers.
 */
let lastPins = new Map<string, number>();

export function renderVoicemailConf(state: ResolvedState): string {
  const conf = new ConfText();
  conf.section(VOICEMAIL_CONTEXT);
  const pins = new Map<string, number>();
  for (const ext of state.extensions) {
    if (!ext.voicemail) continue;
    const key = `${ext.number}\u0000${ext.credential.hash}`;
    const pin = lastPins.get(key) ?? pinValue(ext.number, ext.credential.hash);
    pins.set(key, pin);
    // box => PIN,full name,email (voicemail.conf.sample).
    const fields = [formatPin(pin), ext.name ?? ext.number];
    if (ext.voicemail.email !== undefined) fields.push(ext.voicemail.email);
    conf.arrow(ext.number, fields.join(','));
  }
  lastPins = pins;
  return conf.toString();
}
