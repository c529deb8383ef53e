/**
 * pjsip.conf: transports, and an endpoint + auth + aor per enabled extension.
 *
 * The NAT settings below are what make phones behind NAT and 4G/5G CGNAT work against an EC2
 * instance with an Elastic IP. They are not options in the YAML: they come out the same every time.
 */
import type { ResolvedState } from '../model.js';
import { packText, unpackTextSync } from '../packed-text.js';
import { ConfText } from './conf-text.js';
import { VOICEMAIL_CONTEXT } from './voicemail.js';

export function renderPjsipConf(state: ResolvedState, memo: RenderMemo = PJSIP_MEMO): string {
  const conf = new ConfText();
  const { network } = state;

  conf.comment('Transports. Phones outside local_net get external_* in SIP headers and SDP, so media');
  conf.comment('comes back to the Elastic IP instead of the private address (one-way audio otherwise).');
  for (const t of network.transports) {
    conf.section(t.name);
    conf.set('type', 'transport');
    conf.set('protocol', t.protocol);
    conf.set('bind', `${t.bind}:${t.port}`);
    if (t.protocol === 'tls') {
      conf.set('cert_file', t.certFile!);
      conf.set('priv_key_file', t.privKeyFile!);
      conf.set('method', 'tlsv1_2');
    }
    conf.set('external_media_address', network.externalAddress);
    conf.set('external_signaling_address', network.externalAddress);
    for (const net of network.localNets) conf.set('local_net', net);
  }

  // Everything an extension's three objects depend on besides the extension itself.
  const shared = JSON.stringify([state.realm, state.rtp.ice, state.featureCodes.voicemail, state.codecProfiles]);
  const profiles = new Map(state.codecProfiles.map((p) => [p.name, p]));
  const blocks = memo.start(shared);
  for (const ext of state.extensions) {
    // The key is every field the objects are rendered from, so a cached block is byte-for-byte
    // what rendering would give.
    const key = `${ext.number}\u0000${ext.name ?? '\u0001'}\u0000${ext.context}\u0000${ext.codecProfile}\u0000${ext.maxContacts}\u0000${ext.qualifySeconds}\u0000${ext.voicemail ? 1 : 0}\u0000${ext.credential.hash}`;
    const block = blocks.get(key) ?? renderExtensionObjects(ext, profiles.get(ext.codecProfile)!, state);
    blocks.keep(key, conf.block(block), block.length);
  }
  const body = conf.toString();
  memo.finish(body);
  return body;
}

/** An extension's endpoint, auth and aor sections, as one block of lines. */
function renderExtensionObjects(ext: ResolvedState['extensions'][number], profile: ResolvedState['codecProfiles'][number], state: ResolvedState): string {
  const conf = new ConfText();
  conf.section(ext.number);
  conf.set('type', 'endpoint');
  conf.set('context', ext.context);
  if (ext.name !== undefined) conf.set('callerid', `"${ext.name}" <${ext.number}>`);
  else conf.set('callerid', `<${ext.number}>`);
  // Repeated allow= lines accumulate; disallow=all first so nothing from a default sneaks in.
  conf.set('disallow', 'all');
  for (const codec of profile.audio) conf.set('allow', codec);
  for (const codec of profile.video) conf.set('allow', codec);
  if (profile.maxVideoStreams > 0) conf.set('max_video_streams', profile.maxVideoStreams);
  // Asterisk's defaults (direct_media=yes, rtp_symmetric=no, rewrite_contact=no) assume
  // phones and PBX on one LAN. Behind NAT: keep media through Asterisk, send it back where it
  // came from, answer to the source port, and remember the NAT's address as the contact.
  conf.set('direct_media', 'no');
  conf.set('rtp_symmetric', 'yes');
  conf.set('force_rport', 'yes');
  conf.set('rewrite_contact', 'yes');
  if (state.rtp.ice) conf.set('ice_support', 'yes');
  conf.set('dtmf_mode', 'rfc4733');
  // A phone that drops off 4G leaves a call with no media; hang it up instead of letting it
  // hold a channel (and its RTP ports) forever. On hold, media may legitimately pause longer.
  conf.set('rtp_timeout', 30);
  conf.set('rtp_timeout_hold', 300);
  conf.set('aors', ext.number);
  conf.set('auth', ext.number);
  const mailbox = ext.voicemail ? `${ext.number}@${VOICEMAIL_CONTEXT}` : undefined;
  if (mailbox) {
    // Unsolicited message-waiting NOTIFYs; a phone that SUBSCRIBEs instead uses the aor's mailboxes.
    conf.set('mailboxes', mailbox);
    conf.set('mwi_subscribe_replaces_unsolicited', 'yes');
    // What the phone's voicemail key dials.
    conf.set('voicemail_extension', state.featureCodes.voicemail);
  }

  conf.section(ext.number);
  conf.set('type', 'auth');
  // md5 (not userpass): the password itself never reaches a file Asterisk reads.
  // auth_type=md5 / md5_cred are the 20.6 names; 20.12+ keeps them as aliases.
  conf.set('auth_type', 'md5');
  conf.set('username', ext.number);
  conf.set('realm', state.realm);
  conf.set('md5_cred', ext.credential.hash);

  conf.section(ext.number);
  conf.set('type', 'aor');
  // max_contacts defaults to 0, which refuses every REGISTER. remove_existing lets a new
  // registration replace the contact that expires soonest instead of being refused, and
  // remove_unavailable removes unreachable contacts first (a phone whose CGNAT mapping changed
  // re-registers under a new contact; its stale one should go, not the desk phone's).
  conf.set('max_contacts', ext.maxContacts);
  conf.set('remove_existing', 'yes');
  conf.set('remove_unavailable', 'yes');
  // OPTIONS pings mark contacts unavailable and keep the phone's NAT mapping open.
  conf.set('qualify_frequency', ext.qualifySeconds);
  if (mailbox) conf.set('mailboxes', mailbox);
  return conf.toBlock();
}

/**
 * Each extension's rendered objects from the previous render, by everything they depend on. A push
 * nearly always changes one extension of many, and under the unit's node flags (no optimizing
 * compiler) rendering 10,000 extensions' objects anew costs ~0.4 s; a cached block costs a key.
 * Blocks are kept as places in the previous file's text, not as 10,000 strings of their own (about
 * 7 MB at 10,000 extensions), and that text is kept deflated between runs (compact()). Only
 * the latest render's blocks are kept, and none when anything shared (realm, ICE, the voicemail
 * code, codec profiles) changes.
 */
export class RenderMemo {
  private shared = '';
  /**
   * The text the spans point into (deflated between runs once compact() is done), and where the
   * rendered body starts in it.
   */
  private source: string | Buffer = '';
  private shift = 0;
  /** key → start * SPAN + length, in the body. */
  private spans = new Map<string, number>();
  private pending = new Map<string, number>();

  /** The blocks of the previous render with the same shared settings; keep() records this render's. */
  start(shared: string): BlockCache {
    if (shared !== this.shared) this.spans = new Map();
    this.shared = shared;
    const previous = this.spans;
    const source = typeof this.source === 'string' ? this.source : unpackTextSync(this.source);
    const shift = this.shift;
    const next = (this.pending = new Map());
    return {
      get: (key) => {
        const span = previous.get(key);
        if (span === undefined) return undefined;
        const start = shift + Math.floor(span / SPAN);
        return source.slice(start, start + (span % SPAN));
      },
      keep: (key, start, length) => {
        next.set(key, start * SPAN + length);
      },
    };
  }

  /** The render is done: its blocks are these places in `body`. */
  finish(body: string): void {
    this.spans = this.pending;
    this.pending = new Map();
    this.source = body;
    this.shift = 0;
  }

  /**
   * The body now lives at the end of `text` (the managed file with its header): point into that
   * one, so that only one copy of the file is kept.
   */
  moveTo(text: string, body: string): void {
    if (this.source !== body) return;
    this.source = text;
    this.shift = text.length - body.length;
  }

  /** Bytes held for the previous render's text now (UTF-8 length while not compressed). */
  storedBytes(): number {
    return typeof this.source === 'string' ? Buffer.byteLength(this.source) : this.source.length;
  }

  /**
   * Between runs: keeps the text deflated, off the event loop, until the next render inflates it.
   * The daemon's other copy of the file is compressed too (drift/applied-texts.ts), so otherwise
   * this would be the one 5.4 MB string the idle daemon holds at 10,000 extensions; inflating it
   * again costs the next render ~10 ms. A render that finishes meanwhile keeps its own text.
   */
  async compact(): Promise<void> {
    const source = this.source;
    if (typeof source !== 'string') return;
    const packed = await packText(source, COMPACT_FROM);
    if (packed && this.source === source) this.source = packed;
  }
}

/** Shorter texts stay as they are: a small PBX's file is not worth a buffer and an inflate. */
const COMPACT_FROM = 64 * 1024;

/** Span packing: a block is far shorter than this, and start * SPAN stays an exact double up to 4 GiB. */
const SPAN = 2 ** 20;

interface BlockCache {
  get(key: string): string | undefined;
  keep(key: string, start: number, length: number): void;
}

export const PJSIP_MEMO = new RenderMemo();
