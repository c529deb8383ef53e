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
  // registered to it (max_contacts > 1). It is empty when nothing is registered.
  // Video is passed through by Dial when both phones offer a common video codec.
  conf.arrow('exten', 's,1,Set(LOCAL(contacts)=${PJSIP_DIAL_CONTACTS(${ARG1})})');
  conf.arrow('same', 'n,GotoIf($["${contacts}" = ""]?unavailable)');
  conf.arrow('same', 'n,Dial(${contacts},${ARG2})');
  conf.arrow('same', 'n,GotoIf($["${DIALSTATUS}" = "BUSY"]?busy)');
  conf.arrow('same', 'n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)');
  conf.arrow('same', 'n(unavailable),GotoIf($["${ARG3}" = ""]?done)');
  conf.arrow('same', 'n,VoiceMail(${ARG3},u)');
  conf.arrow('same', 'n(done),Return()');
  conf.arrow('same', 'n(busy),GotoIf($["${ARG3}" = ""]?done)');
  conf.arrow('same', 'n,VoiceMail(${ARG3},b)');
  conf.arrow('same', 'n,Return()');

  conf.section(EXTENSIONS_CONTEXT, 'Dial by number.');
  for (const ext of state.extensions) {
    const mailbox = ext.voicemail ? `${ext.number}@${VOICEMAIL_CONTEXT}` : '';
    conf.arrow('exten', `${ext.number},1,Gosub(${DIAL_SUBROUTINE},s,1(${ext.number},${ext.ringSeconds},${mailbox}))`);
    conf.arrow('same', 'n,Hangup()');
    // Device state for busy-lamp fields on the phones.
    conf.arrow('exten', `${ext.number},hint,PJSIP/${ext.number}`);
  }
  // The caller's own box. The SIP login already proved who they are (the endpoint's callerid is
  // set by the agent), so no PIN: option s. Boxes have no PIN, and VoiceMailMain falls back to
  // asking for a box number when the given one does not exist (app_voicemail.c), so a caller
  // without a box of their own is turned away first instead of being able to pick anyone's.
  const code = state.featureCodes.voicemail;
  conf.arrow('exten', `${code},1,GotoIf(\${VM_INFO(\${CALLERID(num)}@${VOICEMAIL_CONTEXT},exists)}?own)`);
  conf.arrow('same', 'n,Playback(pbx-invalid)');
  conf.arrow('same', 'n,Hangup()');
  conf.arrow('same', `n(own),VoiceMailMain(\${CALLERID(num)}@${VOICEMAIL_CONTEXT},s)`);
  conf.arrow('same', 'n,Hangup()');

  for (const ctx of state.contexts) {
    conf.section(ctx.name);
    conf.arrow('include', EXTENSIONS_CONTEXT);
    for (const inc of ctx.includes) conf.arrow('include', inc);
  }
  return conf.toString();
}
