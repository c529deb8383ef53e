/**
 * extensions.conf: every enabled extension can be dialled by number from every declared context,
 * ringing all of the callee's registered devices, then voicemail where the callee has a box.
 */
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';
import { conferenceBridgeProfile, conferenceUserProfile } from './confbridge.js';
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

  for (const room of state.conferences) renderConference(conf, room);

  for (const ctx of state.contexts) {
    conf.section(ctx.name);
    conf.arrow('include', EXTENSIONS_CONTEXT);
    for (const room of state.conferences) {
      if (room.contexts.includes(ctx.name)) conf.arrow('include', conferenceBridgeProfile(room.number));
    }
    for (const inc of ctx.includes) conf.arrow('include', inc);
  }
  return conf.toString();
}

/** The variable a PIN is read into: the channel's own, gone when the call ends. */
const PIN_VARIABLE = 'PBXAGENT_PIN';
const TRIES_VARIABLE = 'PBXAGENT_PIN_TRIES';

/**
 * One context per room, included by the contexts that may dial it. Without a moderator PIN,
 * ConfBridge asks for the room's PIN itself (user profile `pin`, three tries: app_confbridge.c
 * conf_get_pin). With one, a single prompt must tell the two PINs apart, which ConfBridge cannot:
 * the dialplan reads the digits and compares them with the profiles' `pin` options, read from
 * confbridge.conf with AST_CONFIG (func_config), so the PINs live in that file only. The caller
 * then joins with a copy of the matching profile whose PIN is cleared (CONFBRIDGE(user,template),
 * conf_config_parser.c func_confbridge_helper), or ConfBridge would ask a second time.
 */
function renderConference(conf: ConfText, room: ResolvedState['conferences'][number]): void {
  const context = conferenceBridgeProfile(room.number);
  const member = conferenceUserProfile(room.number, 'member');
  conf.section(context, `Conference room ${room.number}${room.name !== undefined ? ` "${room.name}"` : ''}.`);
  if (!room.moderatorPin) {
    conf.arrow('exten', `${room.number},1,ConfBridge(${room.number},${context},${member})`);
    conf.arrow('same', 'n,Hangup()');
    return;
  }
  const moderator = conferenceUserProfile(room.number, 'moderator');
  const pin = `\${${PIN_VARIABLE}}`;
  // An empty entry never matches a PIN: AST_CONFIG answers empty when it finds nothing.
  const matches = (profile: string) => `$["${pin}" != "" & "${pin}" = "\${AST_CONFIG(confbridge.conf,${profile},pin)}"]`;
  conf.arrow('exten', `${room.number},1,Answer()`);
  conf.arrow('same', `n,Set(${TRIES_VARIABLE}=0)`);
  conf.arrow('same', `n(pin),Read(${PIN_VARIABLE},conf-getpin,12,,1,10)`);
  conf.arrow('same', `n,GotoIf(${matches(moderator)}?moderator)`);
  // Without a room PIN, participants just press # (or wait) at the prompt.
  conf.arrow('same', room.pin ? `n,GotoIf(${matches(member)}?member)` : `n,GotoIf($["${pin}" = ""]?member)`);
  conf.arrow('same', `n,Set(${TRIES_VARIABLE}=$[\${${TRIES_VARIABLE}} + 1])`);
  conf.arrow('same', `n,GotoIf($[\${${TRIES_VARIABLE}} < 3]?pin)`);
  conf.arrow('same', 'n,Playback(conf-invalidpin)');
  conf.arrow('same', 'n,Hangup()');
  conf.arrow('same', `n(moderator),Set(CONFBRIDGE(user,template)=${moderator})`);
  conf.arrow('same', 'n,Goto(join)');
  conf.arrow('same', `n(member),Set(CONFBRIDGE(user,template)=${member})`);
  conf.arrow('same', 'n(join),Set(CONFBRIDGE(user,pin)=)');
  conf.arrow('same', `n,ConfBridge(${room.number},${context})`);
  conf.arrow('same', 'n,Hangup()');
}
