/**
 * The desired state: what the config repo says the PBX should be, after validation and defaults.
 * load builds it (pure), resolve fills in what comes from the host, render turns it into text.
 */
import type { AudioCodec, VideoCodec } from './render/codecs.js';

/**
 * Where a thing was written, for messages that point the operator at the YAML. Line and column
 * are looked up only when a message needs them (LoadResult.locate): finding them means parsing
 * the file a second, slower way.
 */
export interface SourceRef {
  file: string;
  /** The field path inside the file, e.g. ['extensions', 3]. */
  path: (string | number)[];
}

export interface Position {
  line: number;
  column: number;
}

export type Locate = (ref: SourceRef) => Position;

export type Protocol = 'udp' | 'tcp' | 'tls';

export interface DesiredTransport {
  /** Section name in pjsip.conf: `transport-udp` etc. */
  name: string;
  protocol: Protocol;
  bind: string;
  port: number;
  certFile?: string;
  privKeyFile?: string;
}

export interface CodecProfile {
  name: string;
  audio: AudioCodec[];
  video: VideoCodec[];
  /** 0 when the profile has no video. */
  maxVideoStreams: number;
}

/** How an extension's SIP password is given. Passwords never leave memory except as md5. */
export type Credential =
  | { kind: 'secret'; name: string }
  | { kind: 'md5'; hash: string }
  | { kind: 'password'; password: string };

export interface DesiredExtension {
  number: string;
  name?: string;
  credential: Credential;
  codecProfile: string;
  context: string;
  maxContacts: number;
  ringSeconds: number;
  qualifySeconds: number;
  voicemail?: { email?: string };
  source: SourceRef;
}

/** ConfBridge's bridge profile `video_mode` (none: audio only). */
export type VideoMode = 'follow_talker' | 'last_marked' | 'first_marked' | 'sfu' | 'none';

/** A PIN: the name of its secret file on the host; `digits` once the resolve stage has read it. */
export interface PinRef {
  secret: string;
  digits?: string;
}

/** A conference room: an app_confbridge bridge profile, user profiles and a dialplan entry. */
export interface DesiredConference {
  number: string;
  name?: string;
  codecProfile: string;
  videoMode: VideoMode;
  maxMembers: number;
  /** The dialplan contexts the room can be dialled from, sorted. */
  contexts: string[];
  pin?: PinRef;
  moderatorPin?: PinRef;
  /** ConfBridge user profile options, by their ConfBridge names. */
  announceJoinLeave: boolean;
  announceUserCount: boolean;
  musicOnHoldWhenEmpty: boolean;
  quiet: boolean;
  startMuted: boolean;
  waitMarked: boolean;
  endMarked: boolean;
  source: SourceRef;
}

export interface DialplanContext {
  name: string;
  includes: string[];
}

export interface DesiredState {
  network: {
    /** 'auto' until the resolve stage puts the Elastic IP in. */
    externalAddress: string;
    localNets: string[];
    transports: DesiredTransport[];
    /** Where phones may register from; undefined = anywhere. Used by the cloud checks. */
    allowedNetworks?: string[];
  };
  realm: string;
  rtp: {
    portStart: number;
    portEnd: number;
    ice: boolean;
    stunServer?: string;
  };
  codecProfiles: CodecProfile[];
  contexts: DialplanContext[];
  featureCodes: { voicemail: string };
  /** How many extensions one change may remove before it must be acknowledged (plan/guard.ts). */
  removalGuard: { maxCount: number; maxPercent: number };
  /** Enabled extensions only, sorted by number. Disabled ones are not in Asterisk at all. */
  extensions: DesiredExtension[];
  /** Conference rooms, sorted by number. */
  conferences: DesiredConference[];
}

/**
 * The address Asterisk advertises (external_media_address / external_signaling_address) and
 * where it came from: pbx.yaml as written, the Elastic IP for `auto`, or an Elastic IP adopted
 * over pbx.yaml's address (cloud.eip_policy: adopt).
 */
export interface AdvertisedAddress {
  address: string;
  source: 'config' | 'elastic_ip' | 'adopted';
  /** external_address as pbx.yaml has it ("auto" or an address). */
  configured: string;
}

/** The state render takes: every address concrete, every credential an md5 digest. */
export interface ResolvedState extends DesiredState {
  extensions: Array<DesiredExtension & { credential: { kind: 'md5'; hash: string } }>;
  advertised: AdvertisedAddress;
  /** Every PIN with its digits, read from the host's secret files. */
  conferences: Array<DesiredConference & { pin?: Required<PinRef>; moderatorPin?: Required<PinRef> }>;
}
