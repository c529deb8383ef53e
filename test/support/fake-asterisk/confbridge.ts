/**
 * app_confbridge (confbridge.conf) for the fake Asterisk: bridge, user and menu profiles loaded
 * the way apps/confbridge/conf_config_parser.c loads them through the config options framework
 * (main/config_options.c), and `confbridge show profile ...` answered byte for byte as recorded in
 * test/fixtures/ami-transcripts/o_confbridge_profiles.txt (Asterisk 22.10.1; the CLI code is the
 * same in 20.6.0).
 *
 * What the recording and the source show:
 * - Every section needs `type=bridge|user|menu` ([general] excepted); an unknown option, a value
 *   an option cannot take (video_mode=gallery, max_members=ten) or a missing type makes the WHOLE
 *   reload fail: every old profile stays, and AMI's Reload answers `Response: Error` / `An unknown
 *   error occurred` with a Reload event of Status 3 (conf_reload_config, ACO_PROCESS_ERROR).
 * - A parse error inside the #tryinclude'd file is not an error of confbridge.conf: the sections
 *   before the bad line load, the rest of that file is lost, and the Reload answers Success
 *   (config-parser.ts).
 * - An unchanged file is not read again (CONFIG_FLAG_FILEUNCHANGED), and the Reload succeeds.
 * - default_bridge, default_user and default_menu always exist (verify_default_profiles).
 */
import { AsteriskConfigParser } from './config-parser.js';
import type { ConfigCategory, FileStamp, LogFn } from './config-parser.js';

export interface BridgeProfile {
  name: string;
  language: string;
  internalSampleRate: number;
  maximumSampleRate: number;
  mixingInterval: number;
  recordConference: boolean;
  recordFileAppend: boolean;
  recordFileTimestamp: boolean;
  recordFile: string;
  recordOptions: string;
  recordCommand: string;
  maxMembers: number;
  regcontext: string;
  videoMode: 'follow_talker' | 'last_marked' | 'first_marked' | 'sfu' | 'none';
  videoUpdateDiscard: number;
  rembSendInterval: number;
  rembBehavior: string;
  enableEvents: boolean;
  sounds: Map<string, string>;
}

export interface UserProfile {
  name: string;
  flags: Set<string>;
  mohClass: string;
  announcement: string;
  pin: string;
  silenceThreshold: number;
  talkingThreshold: number;
}

/** Sound options and their defaults, in the order `confbridge show profile bridge` prints them. */
const SOUNDS: Array<[string, string, number]> = [
  ['sound_only_person', 'conf-onlyperson', 4],
  ['sound_only_one', 'conf-onlyone', 7],
  ['sound_has_joined', 'conf-hasjoin', 5],
  ['sound_has_left', 'conf-hasleft', 7],
  ['sound_kicked', 'conf-kicked', 9],
  ['sound_muted', 'conf-muted', 10],
  ['sound_unmuted', 'conf-unmuted', 8],
  ['sound_binaural_on', 'confbridge-binaural-on', 4],
  ['sound_binaural_off', 'confbridge-binaural-off', 3],
  ['sound_there_are', 'conf-thereare', 6],
  ['sound_other_in_party', 'conf-otherinparty', 1],
  ['sound_place_into_conference', 'conf-placeintoconf', 1],
  ['sound_wait_for_leader', 'conf-waitforleader', 7],
  ['sound_leader_has_left', 'conf-leaderhasleft', 7],
  ['sound_get_pin', 'conf-getpin', 8],
  ['sound_invalid_pin', 'conf-invalidpin', 4],
  ['sound_locked', 'conf-locked', 9],
  ['sound_unlocked_now', 'conf-unlockednow', 3],
  ['sound_lockednow', 'conf-lockednow', 6],
  ['sound_error_menu', 'conf-errormenu', 5],
  ['sound_join', 'confbridge-join', 11],
  ['sound_leave', 'confbridge-leave', 10],
  ['sound_participants_muted', 'conf-now-muted', 5],
  ['sound_participants_unmuted', 'conf-now-unmuted', 5],
  ['sound_begin', 'confbridge-conf-begin', 10],
];

/** User profile boolean options: option name → [flag, default]. announce_only_user is negative logic in C; kept positive here. */
const USER_FLAGS: Record<string, [string, boolean]> = {
  admin: ['admin', false],
  send_events: ['send_events', false],
  echo_events: ['echo_events', false],
  marked: ['marked', false],
  startmuted: ['startmuted', false],
  music_on_hold_when_empty: ['moh', false],
  quiet: ['quiet', false],
  hear_own_join_sound: ['hear_join', true],
  announce_user_count: ['announce_user_count', false],
  announce_only_user: ['announce_only_user', true],
  wait_marked: ['wait_marked', false],
  end_marked: ['end_marked', false],
  end_marked_any: ['end_marked_any', false],
  talk_detection_events: ['talk_detect', false],
  dtmf_passthrough: ['dtmf_pass', false],
  announce_join_leave: ['announce_join_leave', false],
  announce_join_leave_review: ['announce_join_leave_review', false],
  denoise: ['denoise', false],
  dsp_drop_silence: ['drop_silence', false],
  jitterbuffer: ['jitterbuffer', false],
  text_messaging: ['text_messaging', true],
  answer_channel: ['answer_channel', true],
};

const VIDEO_MODES = new Set(['follow_talker', 'last_marked', 'first_marked', 'sfu', 'none']);
const REMB_BEHAVIORS = new Set(['average', 'lowest', 'highest', 'average_all', 'lowest_all', 'highest_all', 'force']);
/** conf_config_parser.c MAX_PIN. */
const MAX_PIN = 80;

/** ast_true(): yes, true, y, t, 1, on. Any other value is false, never an error (OPT_BOOLFLAG_T). */
const astTrue = (v: string) => /^(yes|true|y|t|1|on)$/i.test(v.trim());
/** ast_parse_arg(PARSE_UINT32): digits only. */
const uint = (v: string) => (/^\s*\d+\s*$/.test(v) ? Number(v) : undefined);

function defaultBridge(name: string): BridgeProfile {
  return {
    name,
    language: 'en',
    internalSampleRate: 0,
    maximumSampleRate: 0,
    mixingInterval: 20,
    recordConference: false,
    recordFileAppend: true,
    recordFileTimestamp: true,
    recordFile: '',
    recordOptions: '',
    recordCommand: '',
    maxMembers: 0,
    regcontext: '',
    videoMode: 'none',
    videoUpdateDiscard: 2000,
    rembSendInterval: 0,
    rembBehavior: 'average',
    enableEvents: false,
    sounds: new Map(),
  };
}

function defaultUser(name: string): UserProfile {
  const flags = new Set(Object.values(USER_FLAGS).filter(([, on]) => on).map(([flag]) => flag));
  return { name, flags, mohClass: '', announcement: '', pin: '', silenceThreshold: 2500, talkingThreshold: 160 };
}

/** Option names conf_load_config registers for bridge profiles (sound_* is a prefix match). */
const BRIDGE_OPTIONS = new Set([
  'type', 'jitterbuffer', 'internal_sample_rate', 'binaural_active', 'maximum_sample_rate', 'mixing_interval',
  'record_conference', 'video_mode', 'record_file_append', 'record_file_timestamp', 'max_members', 'record_file',
  'record_options', 'record_command', 'regcontext', 'language', 'video_update_discard', 'remb_send_interval',
  'remb_behavior', 'remb_estimated_bitrate', 'enable_events', 'template',
]);
const USER_OPTIONS = new Set([
  ...Object.keys(USER_FLAGS), 'type', 'announce_user_count_all', 'pin', 'music_on_hold_class', 'announcement',
  'dsp_silence_threshold', 'dsp_talking_threshold', 'timeout', 'template',
]);

/** One option of a bridge profile; false = the value is refused. */
function setBridgeOption(p: BridgeProfile, name: string, value: string): boolean {
  const n = name.toLowerCase();
  if (n.startsWith('sound_')) {
    // sound_option_handler: an unknown sound name is an error; sound_locked_now prints as sound_lockednow.
    const label = n === 'sound_locked_now' ? 'sound_lockednow' : n;
    if (!SOUNDS.some(([s]) => s === label)) return false;
    p.sounds.set(label, value);
    return true;
  }
  switch (n) {
    case 'type':
    case 'template':
    case 'jitterbuffer':
    case 'binaural_active':
      return true;
    case 'internal_sample_rate':
    case 'maximum_sample_rate': {
      // 22.x sample_rate_handler: "auto"/"none", or 8000-192000.
      const word = n === 'internal_sample_rate' ? 'auto' : 'none';
      const rate = value.trim().toLowerCase() === word ? 0 : uint(value);
      if (rate === undefined || (rate !== 0 && (rate < 8000 || rate > 192000))) return false;
      if (n === 'internal_sample_rate') p.internalSampleRate = rate;
      else p.maximumSampleRate = rate;
      return true;
    }
    case 'mixing_interval': {
      const ms = uint(value);
      if (ms === undefined || ![10, 20, 40, 80].includes(ms)) return false;
      p.mixingInterval = ms;
      return true;
    }
    case 'record_conference':
      p.recordConference = astTrue(value);
      return true;
    case 'record_file_append':
      p.recordFileAppend = astTrue(value);
      return true;
    case 'record_file_timestamp':
      p.recordFileTimestamp = astTrue(value);
      return true;
    case 'enable_events':
      p.enableEvents = astTrue(value);
      return true;
    case 'record_file':
      p.recordFile = value;
      return true;
    case 'record_options':
      p.recordOptions = value;
      return true;
    case 'record_command':
      p.recordCommand = value;
      return true;
    case 'regcontext':
      p.regcontext = value;
      return true;
    case 'language':
      p.language = value;
      return true;
    case 'video_mode':
      if (!VIDEO_MODES.has(value.trim().toLowerCase())) return false;
      p.videoMode = value.trim().toLowerCase() as BridgeProfile['videoMode'];
      return true;
    case 'remb_behavior':
      if (!REMB_BEHAVIORS.has(value.trim().toLowerCase())) return false;
      p.rembBehavior = value.trim().toLowerCase();
      return true;
    case 'max_members':
    case 'video_update_discard':
    case 'remb_send_interval':
    case 'remb_estimated_bitrate': {
      const v = uint(value);
      if (v === undefined) return false;
      if (n === 'max_members') p.maxMembers = v;
      if (n === 'video_update_discard') p.videoUpdateDiscard = v;
      if (n === 'remb_send_interval') p.rembSendInterval = v;
      return true;
    }
    default:
      return false;
  }
}

function setUserOption(p: UserProfile, name: string, value: string): boolean {
  const n = name.toLowerCase();
  const flag = USER_FLAGS[n];
  if (flag) {
    if (astTrue(value)) p.flags.add(flag[0]);
    else p.flags.delete(flag[0]);
    return true;
  }
  switch (n) {
    case 'type':
    case 'template':
      return true;
    case 'announce_user_count_all':
      // announce_user_count_all_handler: yes, or a number of users.
      if (astTrue(value) || uint(value) !== undefined) p.flags.add('announce_user_count_all');
      else p.flags.delete('announce_user_count_all');
      return true;
    case 'pin':
      if (value.length >= MAX_PIN) return false;
      p.pin = value;
      return true;
    case 'music_on_hold_class':
      p.mohClass = value;
      return true;
    case 'announcement':
      p.announcement = value;
      return true;
    case 'dsp_silence_threshold':
    case 'dsp_talking_threshold':
    case 'timeout': {
      const v = uint(value);
      if (v === undefined) return false;
      if (n === 'dsp_silence_threshold') p.silenceThreshold = v;
      if (n === 'dsp_talking_threshold') p.talkingThreshold = v;
      return true;
    }
    default:
      return false;
  }
}

export class ConfbridgeModule {
  private readonly parser: AsteriskConfigParser;
  private cache: Map<string, FileStamp> | undefined;
  bridges = new Map<string, BridgeProfile>();
  users = new Map<string, UserProfile>();
  menus = new Set<string>();
  /** Times the file was really read (unchanged-file skips do not count). */
  loads = 0;

  constructor(configDir: string, private readonly log: LogFn, private readonly unknownOptions: ReadonlySet<string> = new Set()) {
    this.parser = new AsteriskConfigParser({ configDir, log });
  }

  start(): void {
    this.cache = undefined;
    this.bridges = new Map();
    this.users = new Map();
    this.menus = new Set();
    this.read(true);
  }

  /** conf_reload_config(): false when the reload failed (the old profiles stay). */
  reload(): boolean {
    return this.read(false);
  }

  private read(initial: boolean): boolean {
    if (!initial && this.parser.unchanged('confbridge.conf', this.cache)) return true;
    const result = this.parser.load('confbridge.conf');
    this.loads++;
    if (result.status === 'missing') {
      this.log('ERROR', 'config_options.c', "Unable to load config file 'confbridge.conf'");
      if (initial) this.addDefaults();
      return false;
    }
    this.cache = result.stamps;
    if (result.status !== 'ok') {
      if (initial) this.addDefaults();
      return false;
    }
    const next = this.process(result.categories);
    if (!next) {
      if (initial) this.addDefaults();
      return false;
    }
    this.bridges = next.bridges;
    this.users = next.users;
    this.menus = next.menus;
    this.addDefaults();
    return true;
  }

  /** aco_process_config(): every category, or undefined at the first error. */
  private process(categories: ConfigCategory[]) {
    const bridges = new Map<string, BridgeProfile>();
    const users = new Map<string, UserProfile>();
    const menus = new Set<string>();
    for (const cat of categories) {
      if (cat.template) continue;
      if (cat.name.toLowerCase() === 'general') {
        const bad = cat.vars[0];
        if (bad) return this.unknown(cat, bad.name, bad.line, bad.file);
        continue;
      }
      const type = cat.vars.find((v) => v.name.toLowerCase() === 'type')?.value.trim().toLowerCase();
      if (type !== 'bridge' && type !== 'user' && type !== 'menu') {
        this.log('ERROR', 'config_options.c', "Required match field 'type' not found");
        this.log('ERROR', 'config_options.c', `Could not find config type for category '${cat.name}' in 'confbridge.conf'`);
        return undefined;
      }
      if (type === 'menu') {
        for (const v of cat.vars) {
          const n = v.name.toLowerCase();
          if (n !== 'type' && n !== 'template' && !/^[0-9A-D*#]+$/i.test(v.name)) return this.unknown(cat, v.name, v.line, v.file);
        }
        menus.add(cat.name);
        continue;
      }
      if (type === 'bridge') {
        const p = bridges.get(cat.name) ?? defaultBridge(cat.name);
        for (const v of cat.vars) {
          const n = v.name.toLowerCase();
          if (this.unknownOptions.has(n) || (!BRIDGE_OPTIONS.has(n) && !n.startsWith('sound_'))) return this.unknown(cat, v.name, v.line, v.file);
          if (!setBridgeOption(p, v.name, v.value)) return this.badValue(cat, v.name, v.value, v.line, v.file);
        }
        bridges.set(cat.name, p);
      } else {
        const p = users.get(cat.name) ?? defaultUser(cat.name);
        for (const v of cat.vars) {
          const n = v.name.toLowerCase();
          if (this.unknownOptions.has(n) || !USER_OPTIONS.has(n)) return this.unknown(cat, v.name, v.line, v.file);
          if (!setUserOption(p, v.name, v.value)) return this.badValue(cat, v.name, v.value, v.line, v.file);
        }
        users.set(cat.name, p);
      }
    }
    return { bridges, users, menus };
  }

  private unknown(cat: ConfigCategory, name: string, line: number, file: string): undefined {
    this.log('ERROR', 'config_options.c', `Could not find option suitable for category '${cat.name}' named '${name}' at line ${line} of ${this.parser.display(this.parser.resolve(file))}`);
    this.log('ERROR', 'config_options.c', `In confbridge.conf: Processing options for ${cat.name} failed`);
    return undefined;
  }

  /** What the recording logged for video_mode=gallery (config_options.c aco_process_var). */
  private badValue(cat: ConfigCategory, name: string, value: string, line: number, file: string): undefined {
    this.log('ERROR', 'config_options.c', `Error parsing ${name}=${value} at line ${line} of ${this.parser.display(this.parser.resolve(file))}`);
    this.log('ERROR', 'config_options.c', `In confbridge.conf: Processing options for ${cat.name} failed`);
    return undefined;
  }

  /** verify_default_profiles(). */
  private addDefaults(): void {
    if (!this.bridges.has('default_bridge')) this.bridges.set('default_bridge', defaultBridge('default_bridge'));
    if (!this.users.has('default_user')) this.users.set('default_user', defaultUser('default_user'));
    if (!this.menus.has('default_menu')) {
      this.menus.add('default_menu');
      this.log('NOTICE', 'confbridge/conf_config_parser.c', 'Adding default_menu menu to app_confbridge');
    }
  }

  // -- CLI (conf_config_parser.c handle_cli_confbridge_show_*) --

  cliShowBridges(): string[] {
    return ['--------- Bridge Profiles -----------', ...this.bridges.keys()];
  }

  cliShowUsers(): string[] {
    return ['--------- User Profiles -----------', ...this.users.keys()];
  }

  cliShowBridge(name: string): string[] {
    const b = this.bridges.get(name);
    if (!b) return [`No conference bridge profile named '${name}' found!`];
    const yes = (x: boolean) => (x ? 'yes' : 'no');
    const out = [
      '--------------------------------------------',
      `Name:                 ${b.name}`,
      `Language:             ${b.language}`,
      `Internal Sample Rate: ${b.internalSampleRate || 'auto'}`,
      `Maximum Sample Rate: ${b.maximumSampleRate || 'none'}`,
      b.mixingInterval ? `Mixing Interval:      ${b.mixingInterval}` : 'Mixing Interval:      Default 20ms',
      `Record Conference:    ${yes(b.recordConference)}`,
      `Record File Append:    ${yes(b.recordFileAppend)}`,
      `Record File Timestamp: ${yes(b.recordFileTimestamp)}`,
      `Record File:          ${b.recordFile || 'Auto Generated'}`,
      `Record Options:       ${b.recordOptions}`,
      `Record Command:       ${b.recordCommand}`,
      b.maxMembers ? `Max Members:          ${b.maxMembers}` : 'Max Members:          No Limit',
      `Registration context: ${b.regcontext}`,
      `Video Mode:           ${b.videoMode === 'none' ? 'no video' : b.videoMode}`,
      `Video Update Discard: ${b.videoUpdateDiscard}`,
      `REMB Send Interval: ${b.rembSendInterval}`,
      `REMB Behavior:           ${b.rembBehavior}`,
      `Enable Events:             ${yes(b.enableEvents)}`,
    ];
    for (const [option, sound, pad] of SOUNDS) out.push(`${option}:${' '.repeat(pad)}${b.sounds.get(option) ?? sound}`);
    out.push('');
    return out;
  }

  cliShowUser(name: string): string[] {
    const u = this.users.get(name);
    if (!u) return [`No conference user profile named '${name}' found!`];
    const on = (flag: string) => u.flags.has(flag);
    const tf = (flag: string) => (on(flag) ? 'true' : 'false');
    const ed = (flag: string) => (on(flag) ? 'enabled' : 'disabled');
    const joinLeave = on('announce_join_leave_review') ? 'enabled (with review)' : on('announce_join_leave') ? 'enabled' : 'disabled';
    return [
      '--------------------------------------------',
      `Name:                    ${u.name}`,
      `Admin:                   ${tf('admin')}`,
      `Send Events:             ${tf('send_events')}`,
      `Echo Events:             ${tf('echo_events')}`,
      `Marked User:             ${tf('marked')}`,
      `Start Muted:             ${tf('startmuted')}`,
      `MOH When Empty:          ${ed('moh')}`,
      `MOH Class:               ${u.mohClass || 'default'}`,
      `Announcement:            ${u.announcement}`,
      `Quiet:                   ${ed('quiet')}`,
      `Hear Join:               ${ed('hear_join')}`,
      `Wait Marked:             ${ed('wait_marked')}`,
      `END Marked (All):        ${ed('end_marked')}`,
      `END Marked (Any):        ${ed('end_marked_any')}`,
      `Drop_silence:            ${ed('drop_silence')}`,
      `Silence Threshold:       ${u.silenceThreshold}ms`,
      `Talking Threshold:       ${u.talkingThreshold}`,
      `Denoise:                 ${ed('denoise')}`,
      `Jitterbuffer:            ${ed('jitterbuffer')}`,
      `Talk Detect Events:      ${ed('talk_detect')}`,
      `DTMF Pass Through:       ${ed('dtmf_pass')}`,
      `PIN:                     ${u.pin || 'None'}`,
      `Announce User Count:     ${ed('announce_user_count')}`,
      `Announce join/leave:     ${joinLeave}`,
      `Announce User Count all: ${ed('announce_user_count_all')}`,
      `Text Messaging:          ${ed('text_messaging')}`,
      `Answer Channel:          ${tf('answer_channel')}`,
      '',
    ];
  }
}
