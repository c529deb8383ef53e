/**
 * confbridge.conf: per conference room, an app_confbridge bridge profile (size, video mode,
 * mixing rate) and user profiles for its participants and, with a moderator PIN, its moderators.
 * The room's number is dialled through its own dialplan context (extensions.ts).
 *
 * Option names and values: configs/samples/confbridge.conf.sample and
 * apps/confbridge/conf_config_parser.c (conf_load_config) of Asterisk 20. An unknown option or value
 * makes app_confbridge refuse the whole file on reload and keep every old profile.
 */
import type { AudioCodec } from './codecs.js';
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';

type Room = ResolvedState['conferences'][number];

/** Bridge profile of a room, and also its dialplan context (the names live in different files). */
export function conferenceBridgeProfile(number: string): string {
  return `pbx-agent-conf-${number}`;
}

export function conferenceUserProfile(number: string, role: 'member' | 'moderator'): string {
  return `pbx-agent-conf-${number}-${role}`;
}

/**
 * The sample rate each audio codec carries: ConfBridge mixes at the best rate its participants
 * have (internal_sample_rate=auto); capping it at what the room's codecs can carry keeps a
 * t3.micro from mixing at 48 kHz for phones that hear 8 kHz.
 */
const CODEC_SAMPLE_RATE: Record<AudioCodec, number> = { opus: 48000, g722: 16000, ulaw: 8000, alaw: 8000, gsm: 8000, g729: 8000 };

export function maximumSampleRate(audio: readonly AudioCodec[]): number {
  return Math.max(8000, ...audio.map((c) => CODEC_SAMPLE_RATE[c]));
}

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

function describeRoom(room: Room): string {
  const parts = [`Room ${room.number}${room.name !== undefined ? ` "${room.name}"` : ''}`];
  parts.push(`at most ${room.maxMembers} participants`);
  parts.push(room.videoMode === 'none' ? 'audio only' : `video ${room.videoMode}`);
  if (room.pin) parts.push('PIN');
  if (room.moderatorPin) parts.push('moderator PIN');
  return parts.join(', ');
}

export function renderConfbridgeConf(state: ResolvedState): string {
  const conf = new ConfText();
  if (state.conferences.length === 0) return conf.comment('No conference rooms in the config repo.').toString();
  const profiles = new Map(state.codecProfiles.map((p) => [p.name, p]));
  for (const room of state.conferences) {
    const profile = profiles.get(room.codecProfile);
    conf.section(conferenceBridgeProfile(room.number), describeRoom(room));
    conf.set('type', 'bridge');
    conf.set('max_members', room.maxMembers);
    conf.set('video_mode', room.videoMode);
    conf.set('maximum_sample_rate', maximumSampleRate(profile?.audio ?? []));

    conf.section(conferenceUserProfile(room.number, 'member'));
    conf.set('type', 'user');
    userOptions(conf, room, 'member');
    if (room.moderatorPin) {
      conf.section(conferenceUserProfile(room.number, 'moderator'));
      conf.set('type', 'user');
      userOptions(conf, room, 'moderator');
    }
  }
  return conf.toString();
}

/**
 * Moderators are ConfBridge's admin (may join a full room, may kick and lock) and marked users (the
 * ones wait_marked and end_marked wait for, and whose video last_marked and first_marked show).
 */
function userOptions(conf: ConfText, room: Room, role: 'member' | 'moderator'): void {
  const moderator = role === 'moderator';
  conf.set('admin', yesNo(moderator));
  conf.set('marked', yesNo(moderator));
  conf.set('startmuted', yesNo(!moderator && room.startMuted));
  conf.set('music_on_hold_when_empty', yesNo(room.musicOnHoldWhenEmpty));
  conf.set('quiet', yesNo(room.quiet));
  conf.set('announce_user_count', yesNo(room.announceUserCount));
  conf.set('announce_join_leave', yesNo(room.announceJoinLeave));
  conf.set('wait_marked', yesNo(!moderator && room.waitMarked));
  conf.set('end_marked', yesNo(!moderator && room.endMarked));
  const pin = moderator ? room.moderatorPin : room.pin;
  if (pin) conf.set('pin', pin.digits);
}
