/**
 * The config repo contract: what operators write in their git repository.
 *
 *   pbx.yaml                 site: network, transports, RTP, codec profiles, defaults, dialplan
 *   extensions/**\/*.yaml     extensions, in as many files as the operator likes
 *
 * Every string that can reach an Asterisk file is constrained here to a character set that
 * cannot open a section (`[`), start a comment (`;`), end a line, or form a directive
 * (`#include`, `#exec`). The renderer asserts the same again before writing (defence in depth).
 *
 * The JSON Schema in schemas/pbx.schema.json is generated from these definitions
 * (`pbx-agent schema`), so descriptions written here are what editors show.
 */
import { z } from 'zod';

/** Codec names Asterisk 20 knows (`core show codecs`); video is pass-through only. */
export const AUDIO_CODECS = ['opus', 'g722', 'ulaw', 'alaw', 'gsm', 'g729'] as const;
export const VIDEO_CODECS = ['h264', 'h265', 'vp8', 'vp9'] as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/;
const NAME_EXPECTED = 'a name of letters, digits, "-" and "_" (at most 40, starting with a letter or digit)';

/** A short identifier: codec profile, dialplan context, secret name. */
export const Name = z
  .string({ error: `expected ${NAME_EXPECTED}` })
  .regex(NAME_RE, { error: `expected ${NAME_EXPECTED}` });

const AGENT_CONTEXT_PREFIX = 'pbx-agent';
/**
 * Section names extensions.conf never treats as a dialplan context: pbx_config reads [general]
 * and [globals] as settings and variables, compared without case (pbx/pbx_config.c,
 * pbx_load_config: "All categories but "general" or "globals" are considered contexts").
 */
const NOT_A_CONTEXT = ['general', 'globals'];
const notAContext = (s: string) => NOT_A_CONTEXT.includes(s.toLowerCase());
const notAContextError = (what: string) =>
  `${what} cannot be "general" or "globals": extensions.conf reads those sections as settings, never as a dialplan context (phones in it would have no dialplan); pick another name`;

export const ContextName = Name.refine((s) => !s.toLowerCase().startsWith(AGENT_CONTEXT_PREFIX), {
  error: 'context names starting with "pbx-agent" are reserved for the agent\'s own dialplan',
})
  .refine((s) => !notAContext(s), { error: notAContextError('a context') })
  .describe('A dialplan context name, e.g. "internal".');

/** A hand-written context to include: neither one of the agent's own nor a settings section. */
const IncludedContext = Name.refine((s) => !s.toLowerCase().startsWith(AGENT_CONTEXT_PREFIX), {
  error:
    'contexts starting with "pbx-agent" are the agent\'s own and cannot be included by name; every context under dialplan.contexts already reaches every extension',
}).refine((s) => !notAContext(s), { error: notAContextError('an included context') });

export const ExtensionNumber = z
  .string({ error: 'expected an extension number of 2 to 12 digits, e.g. "1001"' })
  .regex(/^[0-9]{2,12}$/, { error: 'expected an extension number of 2 to 12 digits, e.g. "1001"' })
  .describe('The number people dial, 2 to 12 digits. Also the SIP user name of the phone.');

export const FeatureCode = z
  .string({ error: 'expected a feature code such as "*97": a "*" and 1 to 6 digits, or 2 to 8 digits' })
  .regex(/^(\*[0-9]{1,6}|[0-9]{2,8})$/, {
    error: 'expected a feature code such as "*97": a "*" and 1 to 6 digits, or 2 to 8 digits',
  });

/** Unicode letters and digits, space and a few harmless marks: no `"`, `<`, `;`, `,`, `[`, `=`. */
export const DisplayName = z
  .string({ error: 'expected a display name' })
  .min(1, { error: 'expected a display name of at least 1 character' })
  .max(64, { error: 'expected a display name of at most 64 characters' })
  .regex(/^[\p{L}\p{M}\p{N}][\p{L}\p{M}\p{N} .'_()&/+@-]*$/u, {
    error:
      'expected a display name of letters, digits, spaces and . \' _ ( ) & / + @ - (no quotes, <, >, ;, commas, brackets or control characters)',
  })
  .describe('The caller ID name shown on the other phone, e.g. "Alice Example".');

export const Email = z
  .string({ error: 'expected an e-mail address' })
  .max(254)
  .regex(/^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$/, {
    error: 'expected an e-mail address such as alice@example.com',
  });

const IPV4_RE = /^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$/;

export const Ipv4 = z
  .string({ error: 'expected an IPv4 address such as 203.0.113.10' })
  .regex(IPV4_RE, { error: 'expected an IPv4 address such as 203.0.113.10' });

export const Ipv4Cidr = z
  .string({ error: 'expected an IPv4 network in CIDR form such as 172.31.0.0/16' })
  .refine(
    (s) => {
      const [ip, bits, extra] = s.split('/');
      return extra === undefined && ip !== undefined && IPV4_RE.test(ip) && /^([0-9]|[12][0-9]|3[0-2])$/.test(bits ?? '');
    },
    { error: 'expected an IPv4 network in CIDR form such as 172.31.0.0/16' },
  );

const AbsolutePath = z
  .string({ error: 'expected an absolute file path' })
  .regex(/^\/[A-Za-z0-9._/-]{1,200}$/, {
    error: 'expected an absolute file path of letters, digits, ".", "_", "-" and "/"',
  })
  .refine((p) => !p.split('/').includes('..'), { error: 'a file path must not contain ".."' });

const Port = z
  .number({ error: 'expected a port number' })
  .int({ error: 'expected a whole port number' })
  .min(1, { error: 'expected a port between 1 and 65535' })
  .max(65535, { error: 'expected a port between 1 and 65535' });

const HostPort = z
  .string({ error: 'expected host:port' })
  .regex(/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?$/, {
    error: 'expected a host name or IPv4 address with an optional port, e.g. stun.example.org:3478',
  })
  .refine((s) => !s.includes(':') || (Number(s.split(':')[1]) >= 1 && Number(s.split(':')[1]) <= 65535), {
    error: 'expected a port between 1 and 65535 after the host, e.g. stun.example.org:3478',
  });

// ---------------------------------------------------------------------------------------------
// Network

const TransportBase = {
  port: Port.describe('Port to listen on.'),
  bind: Ipv4.default('0.0.0.0').describe('Local address to bind; 0.0.0.0 listens on every interface.'),
};

export const Transports = z
  .strictObject({
    udp: z.strictObject({ ...TransportBase }).optional().describe('SIP over UDP, e.g. { port: 5060 }.'),
    tcp: z.strictObject({ ...TransportBase }).optional().describe('SIP over TCP, e.g. { port: 5060 }.'),
    tls: z
      .strictObject({
        ...TransportBase,
        cert_file: AbsolutePath.describe('PEM certificate readable by Asterisk, e.g. /etc/asterisk/keys/asterisk.crt'),
        priv_key_file: AbsolutePath.describe('PEM private key readable by Asterisk, e.g. /etc/asterisk/keys/asterisk.key'),
      })
      .optional()
      .describe('SIP over TLS, e.g. { port: 5061, cert_file: ..., priv_key_file: ... }.'),
  })
  .refine((t) => t.udp !== undefined || t.tcp !== undefined || t.tls !== undefined, {
    error: 'at least one transport (udp, tcp or tls) is needed',
  })
  .describe('SIP transports by protocol. The reference deployment: { udp: { port: 5060 } }.');

export const Network = z
  .strictObject({
    external_address: z
      .union([z.literal('auto'), Ipv4], {
        error: 'expected "auto" (the instance\'s Elastic IP) or an IPv4 address such as 203.0.113.10',
      })
      .describe(
        'The public address phones reach: "auto" means the Elastic IP associated with this EC2 instance, ' +
          'or an explicit IPv4. Rendered as external_media_address and external_signaling_address.',
      ),
    local_net: z
      .array(Ipv4Cidr, { error: 'expected a list of networks such as [172.31.0.0/16]' })
      .min(1, { error: 'list at least one local network (the VPC CIDR, e.g. 172.31.0.0/16)' })
      .describe('Networks that are NOT behind the NAT: the VPC CIDR block(s). e.g. [172.31.0.0/16]'),
    transports: Transports,
    allowed_networks: z
      .array(Ipv4Cidr, { error: 'expected a list of networks such as [198.51.100.0/24]' })
      .optional()
      .describe(
        'Networks phones may register from. When set, `pbx-agent check` warns about security group rules opening SIP to 0.0.0.0/0.',
      ),
  })
  .describe('How phones reach the PBX.');

// ---------------------------------------------------------------------------------------------
// RTP

export const Rtp = z
  .strictObject({
    port_start: Port.describe('First RTP port (even). Reference: 10000.'),
    port_end: Port.describe('Last RTP port. Reference: 20000.'),
    expected_calls: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .default(100)
      .describe('Concurrent calls the range must carry; each call uses 4 ports per media stream.'),
    ice: z.boolean({ error: 'expected true or false' }).default(false).describe('Enable ICE support (rtp.conf icesupport, endpoint ice_support).'),
    stun_server: HostPort.optional().describe('STUN server for ICE candidates, e.g. stun.example.org:3478.'),
  })
  .describe('The media port range; it must be open for UDP in the security group.');

// ---------------------------------------------------------------------------------------------
// Codec profiles

export const AudioCodec = z.enum(AUDIO_CODECS, { error: `expected one of ${AUDIO_CODECS.join(', ')}` });
export const VideoCodec = z.enum(VIDEO_CODECS, { error: `expected one of ${VIDEO_CODECS.join(', ')}` });

function uniqueList<T extends z.ZodType<string>>(item: T, what: string) {
  return z
    .array(item, { error: `expected a list of ${what} codecs` })
    .refine((xs) => new Set(xs).size === xs.length, { error: `each ${what} codec may be listed only once` });
}

export const CodecProfile = z
  .strictObject({
    audio: uniqueList(AudioCodec, 'audio')
      .min(1, { error: 'list at least one audio codec' })
      .describe('Audio codecs in order of preference, e.g. [opus, g722, ulaw, alaw].'),
    video: uniqueList(VideoCodec, 'video')
      // An empty list would render max_video_streams with no video codec to pass through.
      .min(1, { error: 'list at least one video codec, or leave video out for an audio-only profile' })
      .optional()
      .describe('Video codecs passed through (Asterisk does not transcode video), e.g. [h264, vp8].'),
    max_video_streams: z
      .number()
      .int()
      .min(1)
      .max(8)
      .optional()
      .describe('Video streams per call; default 1 when video is set.'),
  })
  .refine((p) => p.max_video_streams === undefined || p.video !== undefined, {
    error: 'max_video_streams needs a video codec list',
    path: ['max_video_streams'],
  })
  .describe('A named codec set, referenced by extensions.');

// ---------------------------------------------------------------------------------------------
// Extensions

const MaxContacts = z
  .number({ error: 'expected a number of devices from 1 to 20' })
  .int({ error: 'expected a whole number of devices' })
  .min(1, {
    error: 'expected 1 to 20: with 0 Asterisk refuses every REGISTER (aor max_contacts defaults to 0)',
  })
  .max(20, { error: 'expected at most 20 devices per extension' });

const RingSeconds = z.number().int().min(5).max(300);

export const ExtensionSettings = {
  context: ContextName.optional().describe('Dialplan context calls from this phone start in.'),
  codec_profile: Name.optional().describe('Name of a codec profile from codec_profiles.'),
  max_contacts: MaxContacts.optional().describe(
    'Devices that may register at once; a new registration replaces an unreachable contact first, else the one expiring soonest.',
  ),
  ring_seconds: RingSeconds.optional().describe('How long a call rings before voicemail or giving up.'),
  qualify_seconds: z
    .number()
    .int()
    .min(0)
    .max(3600)
    .optional()
    .describe('OPTIONS keepalive interval; keeps NAT bindings open (0 disables).'),
};

export const Voicemail = z.union(
  [
    z.boolean(),
    z.strictObject({ email: Email.optional().describe('Where voicemail notifications go.') }),
  ],
  { error: 'expected true, false, or { email: ... }' },
);

export const Extension = z
  .strictObject({
    number: ExtensionNumber,
    name: DisplayName.optional(),
    secret: Name.optional().describe(
      'Name of a password file kept on the host (outside git), e.g. "alice" reads /etc/pbx-agent/secrets/alice.',
    ),
    md5: z
      .string()
      .regex(/^[0-9a-f]{32}$/, { error: 'expected 32 lowercase hex digits: md5 of "NUMBER:REALM:PASSWORD"' })
      .optional()
      .describe('md5 of "NUMBER:REALM:PASSWORD" (realm defaults to "asterisk"): `pbx-agent md5 NUMBER`.'),
    password: z
      .string()
      .max(128)
      .optional()
      .describe('Plain-text password in git (discouraged; must pass the strength policy). Prefer secret or md5.'),
    enabled: z.boolean({ error: 'expected true or false' }).default(true).describe('false keeps the extension in git but removes it from Asterisk.'),
    voicemail: Voicemail.optional().describe('true, or { email: ... }, gives the extension a voicemail box.'),
    ...ExtensionSettings,
  })
  .describe('One person (or device group) with a number.');

export const ExtensionDefaults = z
  .strictObject({
    context: ContextName.default('internal'),
    codec_profile: Name.optional(),
    max_contacts: MaxContacts.default(3),
    ring_seconds: RingSeconds.default(30),
    qualify_seconds: z.number().int().min(0).max(3600).default(30),
  })
  .describe('Settings every extension gets unless it sets its own.');

// ---------------------------------------------------------------------------------------------
// Dialplan

export const DialplanContext = z
  .strictObject({
    includes: z
      .array(IncludedContext, { error: 'expected a list of context names' })
      .default([])
      .describe('Contexts kept by hand in /etc/asterisk/extensions.conf to include, e.g. [outbound].'),
  })
  .describe('A dialplan context in which every enabled extension can be dialled by number.');

export const Dialplan = z
  .strictObject({
    contexts: z
      .record(ContextName, DialplanContext, { error: 'expected a map of context names' })
      .refine((r) => Object.keys(r).length > 0, { error: 'declare at least one context, e.g. internal: {}' })
      .describe('The contexts extensions may use.'),
    feature_codes: z
      .strictObject({
        voicemail: FeatureCode.default('*97').describe('Dial to listen to your own voicemail.'),
      })
      .prefault({})
      .describe('Numbers with a special meaning.'),
  })
  .describe('The internal dialplan rendered into extensions.conf.');

// ---------------------------------------------------------------------------------------------
// Conference rooms (app_confbridge)

/**
 * ConfBridge's bridge profile `video_mode` values (configs/samples/confbridge.conf.sample,
 * apps/confbridge/conf_config_parser.c video_mode_handler).
 */
export const VIDEO_MODES = ['follow_talker', 'last_marked', 'first_marked', 'sfu', 'none'] as const;

const PIN_IN_GIT =
  'a PIN written here would be in git for everyone who can read the config repo; put the digits in a file on the host, ' +
  '/etc/pbx-agent/secrets/NAME (mode 600), and write { secret: NAME }';

/** A PIN is always a reference to a secret file on the host, never digits in the YAML. */
export const PinSecret = z
  .strictObject(
    {
      secret: Name.describe('Name of a file in /etc/pbx-agent/secrets holding the PIN: 4 to 12 digits on one line.'),
    },
    {
      error: (iss) => {
        if (iss.code !== 'invalid_type' || iss.input === undefined) return undefined;
        return typeof iss.input === 'string' || typeof iss.input === 'number'
          ? PIN_IN_GIT
          : 'expected { secret: NAME }: the PIN is read from /etc/pbx-agent/secrets/NAME on the host';
      },
    },
  )
  .describe('{ secret: NAME }: the PIN lives on the host in /etc/pbx-agent/secrets/NAME, never in git.');

const Flag = (description: string) => z.boolean({ error: 'expected true or false' }).default(false).describe(description);

export const Conference = z
  .strictObject({
    number: ExtensionNumber.describe('The number phones dial to join the room, 2 to 12 digits; not an extension\'s number or a feature code.'),
    name: DisplayName.optional().describe('What the room is called, e.g. "All hands".'),
    max_members: z
      .number({ error: 'expected a number of participants from 2 to 500' })
      .int({ error: 'expected a whole number of participants' })
      .min(2, { error: 'expected at least 2 participants: a room is for two or more' })
      .max(500, { error: 'expected at most 500 participants' })
      .describe('Participants at most (ConfBridge max_members); a moderator may still join a full room.'),
    codec_profile: Name.optional().describe(
      'Codec profile of the room (default defaults.codec_profile): with video, the room carries video; its audio codecs cap the mixing rate.',
    ),
    video_mode: z
      .enum(VIDEO_MODES, { error: `expected one of ${VIDEO_MODES.join(', ')}` })
      .optional()
      .describe(
        'Whose video everyone sees (ConfBridge video_mode). Default follow_talker with a video codec profile, none without. ' +
          'last_marked and first_marked follow a moderator and need moderator_pin; sfu sends every participant\'s video ' +
          'as its own stream and needs max_video_streams of 2 or more.',
      ),
    contexts: z
      .array(ContextName, { error: 'expected a list of context names' })
      .min(1, { error: 'list at least one context, or leave contexts out to reach the room from every context' })
      .refine((xs) => new Set(xs).size === xs.length, { error: 'each context may be listed only once' })
      .optional()
      .describe('Dialplan contexts from which the room can be dialled; default every context under dialplan.contexts.'),
    pin: PinSecret.optional().describe('Everyone must enter this PIN to join: { secret: NAME }.'),
    moderator_pin: PinSecret.optional().describe(
      'Who enters this PIN joins as moderator (ConfBridge admin and marked): { secret: NAME }.',
    ),
    announce_join_leave: Flag('Each caller records their name, which is played when they join and leave (ConfBridge announce_join_leave).'),
    announce_user_count: Flag('Tell each caller how many people are in the room (ConfBridge announce_user_count).'),
    music_on_hold_when_empty: Flag('Play music on hold to a caller who is alone in the room (ConfBridge music_on_hold_when_empty).'),
    quiet: Flag('No join and leave sounds (ConfBridge quiet).'),
    startmuted: Flag('Participants other than moderators join muted (ConfBridge startmuted).'),
    wait_marked: Flag('Participants wait, hearing music, until a moderator joins (ConfBridge wait_marked); needs moderator_pin.'),
    end_marked: Flag('Participants are removed when the last moderator leaves (ConfBridge end_marked); needs moderator_pin.'),
  })
  .describe('A conference room (Asterisk ConfBridge) reached by dialling its number.');

// ---------------------------------------------------------------------------------------------
// Removal guard

export const RemovalGuard = z
  .strictObject({
    max_count: z
      .number({ error: 'expected a number of extensions' })
      .int({ error: 'expected a whole number of extensions' })
      .min(0)
      .max(100000)
      .default(10)
      .describe('One change may remove up to this many extensions without being acknowledged ...'),
    max_percent: z
      .number({ error: 'expected a percentage from 0 to 100' })
      .min(0)
      .max(100)
      .default(25)
      .describe('... or up to this share of them, whichever allows more.'),
  })
  .describe(
    'A change that removes (or locks out) more extensions than this, or every one of them, is refused until acknowledged: ' +
      'a commit trailer "Allow-Mass-Removal: yes", or apply/sync --allow-mass-removal.',
  );

// ---------------------------------------------------------------------------------------------
// Files

export const SiteFile = z
  .strictObject({
    version: z.literal(1, { error: 'expected version: 1' }),
    network: Network,
    sip: z
      .strictObject({
        realm: Name.default('asterisk').describe('Digest realm; md5 credentials are computed with it.'),
      })
      .prefault({}),
    rtp: Rtp,
    codec_profiles: z
      .record(Name, CodecProfile, { error: 'expected a map of codec profiles' })
      .describe('Codec sets by name, e.g. voice: { audio: [opus, g722, ulaw, alaw] }.'),
    defaults: ExtensionDefaults.prefault({}),
    dialplan: Dialplan,
    removal_guard: RemovalGuard.prefault({}),
    conferences: z
      .array(Conference, { error: 'expected a list of conference rooms' })
      .default([])
      .describe('Conference rooms (ConfBridge), each reached by dialling its number.'),
    extensions: z.array(Extension, { error: 'expected a list of extensions' }).default([]),
  })
  .describe('pbx.yaml: the site-wide settings of one PBX.');

export const ExtensionsFile = z
  .strictObject({
    extensions: z.array(Extension, { error: 'expected a list of extensions' }),
  })
  .describe('A file under extensions/: a list of extensions.');

export type SiteFileInput = z.input<typeof SiteFile>;
export type SiteFileData = z.output<typeof SiteFile>;
export type ExtensionsFileData = z.output<typeof ExtensionsFile>;
export type ExtensionData = z.output<typeof Extension>;
export type CodecProfileData = z.output<typeof CodecProfile>;
export type ConferenceData = z.output<typeof Conference>;
