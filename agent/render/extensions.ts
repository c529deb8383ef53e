/**
 * extensions.conf: every enabled extension can be dialled by number from every declared context,
 * ringing all of the callee's registered devices, then voicemail where the callee has a box.
 */
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';
import { VOICEMAIL_CONTEXT } from './voicemail.js';

/** Shared by all extensions so that each one renders to two lines. */
export const DIAL_SUBROUTINE = 'pbx-agent-dial';
export const EXTENSIONS_CONTEXT = 'pbx-agent-extensions';

export function renderExtensionsConf(state: ResolvedState): string {
  const conf = new ConfText();

  conf.section(DIAL_SUBROUTINE, 'Gosub(pbx-agent-dial,s,1(NUMBER,RING_SECONDS,MAILBOX)). MAILBOX may be empty.');
  // Dial(PJSIP/1001) rings only one contact of the aor; PJSIP_DIAL_CONTACTS rings every device
  // registered to it (max_contacts > 1) and is empty when nothing reachable is registered, which
  // Dial would reject. Video is passed through when both phones offer a common video codec.
  // Without a mailbox the call ends with a cause the caller's phone can show: 20 (subscriber
  // absent, SIP 480), 17 (busy, 486), 19 (no answer, 480); a bare Hangup() would send 603.
  conf.arrow('exten', 's,1,Set(LOCAL(contacts)=${PJSIP_DIAL_CONTACTS(${ARG1})})');
  conf.arrow('same', 'n,GotoIf($["${contacts}" = ""]?absent)');
  conf.arrow('same', 'n,Dial(${contacts},${ARG2})');
  conf.arrow('same', 'n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)');
  conf.arrow('same', 'n,GotoIf($["${DIALSTATUS}" = "BUSY"]?busy)');
  conf.arrow('same', 'n,GotoIf($["${ARG3}" = ""]?noanswer)');
  conf.arrow('same', 'n,VoiceMail(${ARG3},u)');
  conf.arrow('same', 'n(done),Return()');
  conf.arrow('same', 'n(absent),GotoIf($["${ARG3}" = ""]?nobody)');
  conf.arrow('same', 'n,VoiceMail(${ARG3},u)');
  conf.arrow('same', 'n,Return()');
  conf.arrow('same', 'n(busy),GotoIf($["${ARG3}" = ""]?busyhangup)');
  conf.arrow('same', 'n,VoiceMail(${ARG3},b)');
  conf.arrow('same', 'n,Return()');
  conf.arrow('same', 'n(nobody),Hangup(20)');
  conf.arrow('same', 'n(busyhangup),Hangup(17)');
  conf.arrow('same', 'n(noanswer),Hangup(19)');

  conf.section(EXTENSIONS_CONTEXT, 'Dial by number.');
  for (const ext of state.extensions) {
    const mailbox = ext.voicemail ? `${ext.number}@${VOICEMAIL_CONTEXT}` : '';
    conf.arrow('exten', `${ext.number},1,Gosub(${DIAL_SUBROUTINE},s,1(${ext.number},${ext.ringSeconds},${mailbox}))`);
    conf.arrow('same', 'n,Hangup()');
    // Device state for busy-lamp fields on the phones.
    conf.arrow('exten', `${ext.number},hint,PJSIP/${ext.number}`);
  }
  // The caller's own box, without a PIN (option s): CHANNEL(endpoint) is the PJSIP endpoint that
  // authenticated the call, which caller ID is not (a trunk or a transfer can set any number).
  // Non-PJSIP channels and endpoints without a box of their own are turned away.
  const code = state.featureCodes.voicemail;
  conf.arrow('exten', `${code},1,Set(vmbox=\${CHANNEL(endpoint)})`);
  conf.arrow('same', 'n,GotoIf($["${vmbox}" = ""]?deny)');
  conf.arrow('same', `n,GotoIf(\${VM_INFO(\${vmbox}@${VOICEMAIL_CONTEXT},exists)}?own)`);
  conf.arrow('same', 'n(deny),Playback(pbx-invalid)');
  conf.arrow('same', 'n,Hangup(21)');
  conf.arrow('same', `n(own),VoiceMailMain(\${vmbox}@${VOICEMAIL_CONTEXT},s)`);
  conf.arrow('same', 'n,Hangup()');

  for (const ctx of state.contexts) {
    conf.section(ctx.name);
    conf.arrow('include', EXTENSIONS_CONTEXT);
    for (const inc of ctx.includes) conf.arrow('include', inc);
  }
  return conf.toString();
}
