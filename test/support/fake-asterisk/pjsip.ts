/**
 * res_pjsip's configuration model (sorcery + res_sorcery_config) for the fake Asterisk.
 *
 * What a reload does is copied from the real Asterisk 20 runs in
 * /work/shared/reference/asterisk-20/transcripts (e_*.txt, k_startup_dup.txt, l_startup_parse_error.txt):
 * - every object type reads pjsip.conf on its own (so file-level errors are logged once per type);
 * - unknown option / bad value: ERROR, the object is not created; if it existed, the OLD one is kept
 *   (e_1, e_2, e_4_bad_value);
 * - two sections with the same name and type: that whole type keeps its previous objects
 *   (e_4_dup_endpoint, e_4_dup_auth, e_5_dup_plus_new); at startup that leaves zero (k_startup_dup);
 * - missing or misspelt `type`: silently ignored (e_5_missing_type, e_5_bad_type);
 * - dangling aor/auth references: accepted, endpoint Unavailable (e_5_dangling_refs);
 * - file that does not parse / is missing: nothing changes (e_3_syntax_bracket, e_8);
 * - transport bind change: NOTICE "not fully reloadable", old bind stays (e_6);
 * - the file is not re-read when its size+mtime (and its includes') are unchanged.
 *
 * Field names and value formats of the AMI events are copied from
 * m_endpoint_detail_aors_coresettings_rtp_getconfig_ping.txt and d_add6003.txt.
 */
import { createHash } from 'node:crypto';
import { AsteriskConfigParser } from './config-parser.js';
import type { ConfigCategory, ConfigVariable, FileStamp, LogFn } from './config-parser.js';

// ---------------------------------------------------------------------------------------------
// Option tables
// ---------------------------------------------------------------------------------------------

type Kind =
  | 'bool' // OPT_BOOL_T: any value accepted (ast_true), shown true/false — why `direct_media = maybe` means no
  | 'yesno' // shown yes/no
  | 'YesNo' // shown Yes/No
  | 'uint' // OPT_UINT_T: digits only, else "Error parsing"
  | 'double'
  | 'string'
  | 'codecs' // allow / disallow
  | 'callerid'
  | `enum:${string}`; // allowed values separated by |

interface OptionSpec {
  /** Option name in pjsip.conf */
  name: string;
  /** Header name in the AMI *Detail / *List events; null = write-only option */
  key: string | null;
  /** The value Asterisk shows when the option is not set */
  dflt: string;
  kind: Kind;
  /** Repeated lines accumulate (local_net, contact, set_var) */
  multi?: boolean;
  /** Range check for uint */
  max?: number;
}

const o = (name: string, key: string | null, dflt: string, kind: Kind, extra: Partial<OptionSpec> = {}): OptionSpec => ({
  name, key, dflt, kind, ...extra,
});

const CODEC_PREF_IN = 'prefer:pending, operation:intersect, keep:all, transcode:allow';

/** Endpoint options, in the order EndpointDetail shows them (m_*.txt). */
export const ENDPOINT_OPTIONS: OptionSpec[] = [
  o('rpid_immediate', 'RpidImmediate', 'false', 'bool'),
  o('webrtc', 'Webrtc', 'no', 'yesno'),
  o('ignore_183_without_sdp', 'Ignore183WithoutSdp', 'false', 'bool'),
  o('send_aoc', 'SendAoc', 'false', 'bool'),
  o('device_state_busy_at', 'DeviceStateBusyAt', '0', 'uint'),
  o('t38_udptl_maxdatagram', 'T38UdptlMaxdatagram', '0', 'uint'),
  o('codec_prefs_incoming_answer', 'CodecPrefsIncomingAnswer', CODEC_PREF_IN, 'string'),
  o('security_negotiation', 'SecurityNegotiation', 'no', 'enum:no|mediasec'),
  o('dtls_rekey', 'DtlsRekey', '0', 'uint'),
  o('rtp_port_end', 'RtpPortEnd', '0', 'uint'),
  o('named_pickup_group', 'NamedPickupGroup', '', 'string'),
  o('direct_media_method', 'DirectMediaMethod', 'invite', 'enum:invite|reinvite|update'),
  o('send_rpid', 'SendRpid', 'false', 'bool'),
  o('pickup_group', 'PickupGroup', '', 'string'),
  o('sdp_session', 'SdpSession', 'Asterisk', 'string'),
  o('dtls_verify', 'DtlsVerify', 'No', 'string'),
  o('message_context', 'MessageContext', '', 'string'),
  o('tenantid', 'Tenantid', '', 'string'),
  o('mailboxes', 'Mailboxes', '', 'string'),
  o('record_on_feature', 'RecordOnFeature', 'automixmon', 'string'),
  o('dtls_private_key', 'DtlsPrivateKey', '', 'string'),
  o('dtls_fingerprint', 'DtlsFingerprint', 'SHA-256', 'enum:SHA-256|SHA-1'),
  o('overlap_context', 'OverlapContext', '', 'string'),
  o('outgoing_call_offer_pref', 'OutgoingCallOfferPref', 'remote_merge',
    'enum:local|local_first|local_merge|remote|remote_first|remote_merge'),
  o('rtp_port_start', 'RtpPortStart', '0', 'uint'),
  o('from_domain', 'FromDomain', '', 'string'),
  o('timers_sess_expires', 'TimersSessExpires', '1800', 'uint'),
  o('named_call_group', 'NamedCallGroup', '', 'string'),
  o('dtls_cipher', 'DtlsCipher', '', 'string'),
  o('media_encryption_optimistic', 'MediaEncryptionOptimistic', 'false', 'bool'),
  o('suppress_q850_reason_headers', 'SuppressQ850ReasonHeaders', 'false', 'bool'),
  o('aors', 'Aors', '', 'string'),
  o('identify_by', 'IdentifyBy', 'username,ip', 'string'),
  o('callerid_privacy', 'CalleridPrivacy', 'allowed_not_screened',
    'enum:allowed_not_screened|allowed_passed_screen|allowed_failed_screen|allowed|prohib_not_screened|prohib_passed_screen|prohib_failed_screen|prohib|unavailable'),
  o('mwi_subscribe_replaces_unsolicited', 'MwiSubscribeReplacesUnsolicited', 'no', 'yesno'),
  o('cos_audio', 'CosAudio', '0', 'uint'),
  o('follow_early_media_fork', 'FollowEarlyMediaFork', 'true', 'bool'),
  o('context', 'Context', 'default', 'string'),
  o('rtp_symmetric', 'RtpSymmetric', 'false', 'bool'),
  o('transport', 'Transport', '', 'string'),
  o('moh_suggest', 'MohSuggest', 'default', 'string'),
  o('t38_udptl', 'T38Udptl', 'false', 'bool'),
  o('fax_detect', 'FaxDetect', 'false', 'bool'),
  o('t38_bind_udptl_to_media_address', 'T38BindUdptlToMediaAddress', 'false', 'bool'),
  o('tos_video', 'TosVideo', '0', 'string'),
  o('srtp_tag_32', 'SrtpTag32', 'false', 'bool'),
  o('refer_blind_progress', 'ReferBlindProgress', 'true', 'bool'),
  o('max_audio_streams', 'MaxAudioStreams', '1', 'uint'),
  o('bundle', 'Bundle', 'false', 'bool'),
  o('use_avpf', 'UseAvpf', 'false', 'bool'),
  o('call_group', 'CallGroup', '', 'string'),
  o('send_connected_line', 'SendConnectedLine', 'yes', 'yesno'),
  o('fax_detect_timeout', 'FaxDetectTimeout', '0', 'uint'),
  o('sdp_owner', 'SdpOwner', '-', 'string'),
  o('force_rport', 'ForceRport', 'true', 'bool'),
  o('callerid_tag', 'CalleridTag', '', 'string'),
  o('rtp_timeout_hold', 'RtpTimeoutHold', '0', 'uint'),
  o('suppress_moh_on_sendonly', 'SuppressMohOnSendonly', 'false', 'bool'),
  o('use_ptime', 'UsePtime', 'false', 'bool'),
  o('media_address', 'MediaAddress', '', 'string'),
  o('voicemail_extension', 'VoicemailExtension', '', 'string'),
  o('rtp_timeout', 'RtpTimeout', '0', 'uint'),
  o('stir_shaken', 'StirShaken', 'no', 'string'),
  o('set_var', 'SetVar', '', 'string', { multi: true }),
  o('contact_acl', 'ContactAcl', '', 'string', { multi: true }),
  o('preferred_codec_only', 'PreferredCodecOnly', 'false', 'bool'),
  o('geoloc_outgoing_call_profile', 'GeolocOutgoingCallProfile', '', 'string'),
  o('force_avp', 'ForceAvp', 'false', 'bool'),
  o('record_off_feature', 'RecordOffFeature', 'automixmon', 'string'),
  o('from_user', 'FromUser', '', 'string'),
  o('send_diversion', 'SendDiversion', 'true', 'bool'),
  o('send_history_info', 'SendHistoryInfo', 'false', 'bool'),
  o('t38_udptl_ipv6', 'T38UdptlIpv6', 'false', 'bool'),
  o('tone_zone', 'ToneZone', '', 'string'),
  o('language', 'Language', '', 'string'),
  o('allow_subscribe', 'AllowSubscribe', 'true', 'bool'),
  o('rtp_ipv6', 'RtpIpv6', 'false', 'bool'),
  o('callerid', 'Callerid', '<unknown>', 'callerid'),
  o('moh_passthrough', 'MohPassthrough', 'false', 'bool'),
  o('cos_video', 'CosVideo', '0', 'uint'),
  o('dtls_auto_generate_cert', 'DtlsAutoGenerateCert', 'No', 'YesNo'),
  o('asymmetric_rtp_codec', 'AsymmetricRtpCodec', 'false', 'bool'),
  o('geoloc_incoming_call_profile', 'GeolocIncomingCallProfile', '', 'string'),
  o('ice_support', 'IceSupport', 'false', 'bool'),
  o('aggregate_mwi', 'AggregateMwi', 'true', 'bool'),
  o('one_touch_recording', 'OneTouchRecording', 'false', 'bool'),
  o('mwi_from_user', 'MwiFromUser', '', 'string'),
  o('redirect_method', 'RedirectMethod', 'user', 'enum:user|uri_core|uri_pjsip'),
  o('accountcode', 'Accountcode', '', 'string'),
  o('codec_prefs_outgoing_answer', 'CodecPrefsOutgoingAnswer', CODEC_PREF_IN, 'string'),
  o('allow', 'Allow', '(nothing)', 'codecs'),
  o('rewrite_contact', 'RewriteContact', 'false', 'bool'),
  o('user_eq_phone', 'UserEqPhone', 'false', 'bool'),
  o('rtp_engine', 'RtpEngine', 'asterisk', 'string'),
  o('follow_redirect_methods', 'FollowRedirectMethods', '', 'string'),
  o('subscribe_context', 'SubscribeContext', '', 'string'),
  o('notify_early_inuse_ringing', 'NotifyEarlyInuseRinging', 'false', 'bool'),
  o('incoming_mwi_mailbox', 'IncomingMwiMailbox', '', 'string'),
  o('incoming_call_offer_pref', 'IncomingCallOfferPref', 'local', 'enum:local|local_first|remote|remote_first'),
  o('allow_unauthenticated_options', 'AllowUnauthenticatedOptions', 'false', 'bool'),
  o('auth', 'Auth', '', 'string'),
  o('direct_media_glare_mitigation', 'DirectMediaGlareMitigation', 'none', 'enum:none|outgoing|incoming'),
  o('trust_id_inbound', 'TrustIdInbound', 'false', 'bool'),
  o('stir_shaken_profile', 'StirShakenProfile', '', 'string'),
  o('bind_rtp_to_media_address', 'BindRtpToMediaAddress', 'false', 'bool'),
  o('disable_direct_media_on_nat', 'DisableDirectMediaOnNat', 'false', 'bool'),
  o('media_encryption', 'MediaEncryption', 'no', 'enum:no|sdes|dtls'),
  o('media_use_received_transport', 'MediaUseReceivedTransport', 'false', 'bool'),
  o('allow_overlap', 'AllowOverlap', 'true', 'bool'),
  o('dtmf_mode', 'DtmfMode', 'rfc4733', 'enum:rfc4733|inband|info|auto|auto_info|none'),
  o('outbound_auth', 'OutboundAuth', '', 'string'),
  o('tos_audio', 'TosAudio', '0', 'string'),
  o('dtls_cert_file', 'DtlsCertFile', '', 'string'),
  o('dtls_ca_path', 'DtlsCaPath', '', 'string'),
  o('dtls_setup', 'DtlsSetup', 'active', 'enum:active|passive|actpass'),
  o('connected_line_method', 'ConnectedLineMethod', 'invite', 'enum:invite|reinvite|update'),
  o('g726_non_standard', 'G726NonStandard', 'false', 'bool'),
  o('100rel', '100rel', 'yes', 'enum:no|required|yes|peer_supported'),
  o('timers', 'Timers', 'yes', 'enum:forced|no|required|always|yes'),
  o('direct_media', 'DirectMedia', 'true', 'bool'),
  o('acl', 'Acl', '', 'string', { multi: true }),
  o('timers_min_se', 'TimersMinSe', '90', 'uint'),
  o('trust_id_outbound', 'TrustIdOutbound', 'false', 'bool'),
  o('sub_min_expiry', 'SubMinExpiry', '0', 'uint'),
  o('rtcp_mux', 'RtcpMux', 'false', 'bool'),
  o('max_video_streams', 'MaxVideoStreams', '1', 'uint'),
  o('accept_multiple_sdp_answers', 'AcceptMultipleSdpAnswers', 'false', 'bool'),
  o('codec_prefs_incoming_offer', 'CodecPrefsIncomingOffer', CODEC_PREF_IN, 'string'),
  o('codec_prefs_outgoing_offer', 'CodecPrefsOutgoingOffer',
    'prefer:pending, operation:union, keep:all, transcode:allow', 'string'),
  o('trust_connected_line', 'TrustConnectedLine', 'yes', 'yesno'),
  o('send_pai', 'SendPai', 'false', 'bool'),
  o('rtp_keepalive', 'RtpKeepalive', '0', 'uint'),
  o('t38_udptl_ec', 'T38UdptlEc', 'none', 'enum:none|fec|redundancy'),
  o('t38_udptl_nat', 'T38UdptlNat', 'false', 'bool'),
  o('allow_transfer', 'AllowTransfer', 'true', 'bool'),
  o('dtls_ca_file', 'DtlsCaFile', '', 'string'),
  o('outbound_proxy', 'OutboundProxy', '', 'string'),
  o('inband_progress', 'InbandProgress', 'false', 'bool'),
  // Accepted but not shown in EndpointDetail.
  o('disallow', null, '', 'codecs'),
  o('deny', null, '', 'string', { multi: true }),
  o('permit', null, '', 'string', { multi: true }),
  o('contact_deny', null, '', 'string', { multi: true }),
  o('contact_permit', null, '', 'string', { multi: true }),
  o('contact_user', null, '', 'string'),
  o('security_mechanisms', null, '', 'string'),
];

/** Auth options, in AuthDetail order (m_*.txt). Accepts the 20.12+ names too (digest, password_digest). */
export const AUTH_OPTIONS: OptionSpec[] = [
  o('oauth_secret', 'OauthSecret', '', 'string'),
  o('password_digest', 'PasswordDigest', '', 'string'),
  o('supported_algorithms_uas', 'SupportedAlgorithmsUas', 'MD5', 'string'),
  o('refresh_token', 'RefreshToken', '', 'string'),
  o('username', 'Username', '', 'string'),
  o('md5_cred', 'Md5Cred', '', 'string'),
  o('realm', 'Realm', '', 'string'),
  o('auth_type', 'AuthType', 'userpass', 'enum:userpass|md5|digest|google_oauth'),
  o('password', 'Password', '', 'string'),
  o('supported_algorithms_uac', 'SupportedAlgorithmsUac', 'MD5', 'string'),
  o('nonce_lifetime', 'NonceLifetime', '32', 'uint'),
  o('oauth_clientid', 'OauthClientid', '', 'string'),
];

/** AOR options, in AorDetail/AorList order (m_*.txt). */
export const AOR_OPTIONS: OptionSpec[] = [
  o('minimum_expiration', 'MinimumExpiration', '60', 'uint'),
  o('default_expiration', 'DefaultExpiration', '3600', 'uint'),
  o('qualify_timeout', 'QualifyTimeout', '3.000000', 'double'),
  o('qualify_2xx_only', 'Qualify2xxOnly', 'false', 'bool'),
  o('mailboxes', 'Mailboxes', '', 'string'),
  o('support_path', 'SupportPath', 'false', 'bool'),
  o('remove_unavailable', 'RemoveUnavailable', 'false', 'bool'),
  o('voicemail_extension', 'VoicemailExtension', '', 'string'),
  o('max_contacts', 'MaxContacts', '0', 'uint'),
  o('authenticate_qualify', 'AuthenticateQualify', 'false', 'bool'),
  o('contact', 'Contacts', '', 'string', { multi: true }),
  o('maximum_expiration', 'MaximumExpiration', '7200', 'uint'),
  o('qualify_frequency', 'QualifyFrequency', '0', 'uint', { max: 86400 }),
  o('remove_existing', 'RemoveExisting', 'false', 'bool'),
  o('outbound_proxy', 'OutboundProxy', '', 'string'),
];

/** Transport options, in the (alphabetical) order of `pjsip show transport` (n_*.txt). */
export const TRANSPORT_OPTIONS: OptionSpec[] = [
  o('allow_reload', 'AllowReload', 'false', 'bool'),
  o('allow_wildcard_certs', 'AllowWildcardCerts', 'No', 'YesNo'),
  o('async_operations', 'AsyncOperations', '1', 'uint'),
  o('bind', 'Bind', '', 'string'),
  o('ca_list_file', 'CaListFile', '', 'string'),
  o('ca_list_path', 'CaListPath', '', 'string'),
  o('cert_file', 'CertFile', '', 'string'),
  o('cipher', 'Cipher', '', 'string'),
  o('cos', 'Cos', '0', 'uint'),
  o('domain', 'Domain', '', 'string'),
  o('external_media_address', 'ExternalMediaAddress', '', 'string'),
  o('external_signaling_address', 'ExternalSignalingAddress', '', 'string'),
  o('external_signaling_port', 'ExternalSignalingPort', '0', 'uint', { max: 65535 }),
  o('local_net', 'LocalNet', '', 'string', { multi: true }),
  o('method', 'Method', 'unspecified', 'enum:default|unspecified|tlsv1|tlsv1_1|tlsv1_2|tlsv1_3|sslv2|sslv23|sslv3'),
  o('password', 'Password', '', 'string'),
  o('priv_key_file', 'PrivKeyFile', '', 'string'),
  o('protocol', 'Protocol', 'udp', 'enum:udp|tcp|tls|ws|wss|flow'),
  o('require_client_cert', 'RequireClientCert', 'No', 'YesNo'),
  o('symmetric_transport', 'SymmetricTransport', 'false', 'bool'),
  o('tcp_keepalive_enable', 'TcpKeepaliveEnable', 'false', 'bool'),
  o('tcp_keepalive_idle_time', 'TcpKeepaliveIdleTime', '30', 'uint'),
  o('tcp_keepalive_interval_time', 'TcpKeepaliveIntervalTime', '1', 'uint'),
  o('tcp_keepalive_probe_count', 'TcpKeepaliveProbeCount', '5', 'uint'),
  o('tos', 'Tos', '0', 'string'),
  o('verify_client', 'VerifyClient', 'No', 'YesNo'),
  o('verify_server', 'VerifyServer', 'No', 'YesNo'),
  o('websocket_write_timeout', 'WebsocketWriteTimeout', '100', 'uint'),
];

/** Transport settings a reload does not change without allow_reload=yes (e_6_transport_bind_change.txt). */
const TRANSPORT_NOT_RELOADABLE = [
  'protocol', 'bind', 'ca_list_file', 'ca_list_path', 'cipher', 'method', 'verify_client', 'verify_server',
  'require_client_cert', 'allow_wildcard_certs', 'tos', 'cos', 'tcp_keepalive_enable', 'tcp_keepalive_idle_time',
  'tcp_keepalive_interval_time', 'tcp_keepalive_probe_count', 'async_operations',
];

/** Codec names Asterisk 20 knows (format names, as used in allow=). */
export const KNOWN_CODECS = [
  'ulaw', 'alaw', 'gsm', 'g726', 'g726aal2', 'adpcm', 'slin', 'slin12', 'slin16', 'slin24', 'slin32', 'slin44',
  'slin48', 'slin96', 'slin192', 'lpc10', 'g729', 'speex', 'speex16', 'speex32', 'ilbc', 'g722', 'siren7', 'siren14',
  'testlaw', 'g719', 'opus', 'codec2', 'silk8', 'silk12', 'silk16', 'silk24', 'h261', 'h263', 'h263p', 'h264', 'h265',
  'mpeg4', 'vp8', 'vp9', 'red', 't140red', 't140', 'jpeg', 'png',
];

type ObjectType = 'endpoint' | 'aor' | 'auth' | 'transport';

const OPTIONS: Record<ObjectType, Map<string, OptionSpec>> = {
  endpoint: new Map(ENDPOINT_OPTIONS.map((s) => [s.name, s])),
  aor: new Map(AOR_OPTIONS.map((s) => [s.name, s])),
  auth: new Map(AUTH_OPTIONS.map((s) => [s.name, s])),
  transport: new Map(TRANSPORT_OPTIONS.map((s) => [s.name, s])),
};

/**
 * The sorcery object types that read pjsip.conf, in the order their log lines appear. A file-level
 * problem is logged once per type (13 times on reload, 14 at startup with 'system': see
 * e_3_syntax_bracket.txt and l_startup_parse_error.txt). Only the first four are modelled.
 */
const SORCERY_TYPES = [
  'auth', 'transport', 'aor', 'endpoint', 'identify', 'domain_alias', 'global', 'acl',
  'registration', 'outbound-publish', 'inbound-publication', 'resource_list', 'phoneprov',
];

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

export interface PjsipObject {
  type: ObjectType;
  id: string;
  /** option name -> value as Asterisk displays it (multi options: joined with ',') */
  values: Map<string, string>;
  /** multi options, one entry per line */
  lists: Map<string, string[]>;
  /** allow= result */
  codecs: string[];
}

export interface Contact {
  aor: string;
  uri: string;
  userAgent: string;
}

export function asteriskTrue(v: string): boolean {
  return /^(yes|true|y|t|1|on)$/i.test(v.trim());
}

function isUint(v: string, max = 0xffffffff): boolean {
  return /^\d+$/.test(v.trim()) && Number(v.trim()) <= max;
}

/** "172.31.0.0/16" -> "172.31.0.0/255.255.0.0" (how `pjsip show transport` shows local_net). */
export function formatLocalNet(value: string): string | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}|\d{1,3}(?:\.\d{1,3}){3}))?$/.exec(value.trim());
  if (!m) return null;
  const addr = (m[1] ?? '').split('.').map(Number);
  if (addr.some((n) => n > 255)) return null;
  let mask: number[];
  const spec = m[2];
  if (spec === undefined) mask = [255, 255, 255, 255];
  else if (spec.includes('.')) {
    mask = spec.split('.').map(Number);
    if (mask.some((n) => n > 255)) return null;
  } else {
    const bits = Number(spec);
    if (bits > 32) return null;
    const n = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    mask = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  }
  const net = addr.map((a, i) => a & (mask[i] ?? 0));
  return `${net.join('.')}/${mask.join('.')}`;
}

/** bind=ADDR[:PORT] -> "ADDR:PORT" (port defaults to 5060, 5061 for tls); null if not an address. */
function formatBind(value: string, protocol: string): string | null {
  const v = value.trim();
  const dflt = protocol === 'tls' ? 5061 : 5060;
  let m = /^(\d{1,3}(?:\.\d{1,3}){3})(?::(\d+))?$/.exec(v);
  if (m) {
    if ((m[1] ?? '').split('.').some((n) => Number(n) > 255)) return null;
    const port = m[2] === undefined ? dflt : Number(m[2]);
    return port > 65535 ? null : `${m[1]}:${port}`;
  }
  m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(v);
  if (m) return `[${m[1]}]:${m[2] ?? dflt}`;
  if (/^[0-9a-fA-F:]+$/.test(v) && v.includes(':')) return `[${v}]:${dflt}`;
  return null;
}

/** ast_callerid_merge(): `"Name" <num>`, or whichever part exists, or <unknown>. */
function formatCallerId(value: string): string {
  const v = value.trim();
  const m = /^\s*(?:"?([^"<]*?)"?\s*)?<([^>]*)>\s*$/.exec(v);
  let name = '';
  let num = '';
  if (m) {
    name = (m[1] ?? '').trim();
    num = (m[2] ?? '').trim();
  } else if (/^[0-9*#+]+$/.test(v)) num = v;
  else name = v.replace(/^"|"$/g, '');
  if (name && num) return `"${name}" <${num}>`;
  return name || num || '<unknown>';
}

/** Default values per type, built once. Objects hold only what their section sets: with 30,000
 * objects, a full copy of ~100 defaults each was most of a reload's time (garbage collection). */
const DEFAULT_VALUES = new Map<ObjectType, ReadonlyMap<string, string>>();

export function defaultValues(type: ObjectType): ReadonlyMap<string, string> {
  let defaults = DEFAULT_VALUES.get(type);
  if (!defaults) {
    const values = new Map<string, string>();
    for (const spec of OPTIONS[type].values()) if (spec.key) values.set(spec.name, spec.dflt);
    DEFAULT_VALUES.set(type, (defaults = values));
  }
  return defaults;
}

/** An option's value as Asterisk would show it: what the section set, else the default. */
export function valueOf(obj: PjsipObject, name: string): string | undefined {
  return obj.values.get(name) ?? defaultValues(obj.type).get(name);
}

function newObject(type: ObjectType, id: string): PjsipObject {
  return { type, id, values: new Map(), lists: new Map(), codecs: [] };
}

type ApplyResult = { ok: true } | { ok: false; unknown: boolean; extra?: [string, string, string] };

/** Set one option the way aco/sorcery does; returns false when Asterisk would refuse the value. */
function applyOption(obj: PjsipObject, spec: OptionSpec, raw: string): ApplyResult {
  const value = raw.trim();
  const kind = spec.kind;
  if (kind === 'bool') obj.values.set(spec.name, asteriskTrue(value) ? 'true' : 'false');
  else if (kind === 'yesno') obj.values.set(spec.name, asteriskTrue(value) ? 'yes' : 'no');
  else if (kind === 'YesNo') obj.values.set(spec.name, asteriskTrue(value) ? 'Yes' : 'No');
  else if (kind === 'uint') {
    if (!isUint(value, spec.max)) return { ok: false, unknown: false };
    obj.values.set(spec.name, String(Number(value)));
  } else if (kind === 'double') {
    if (!/^\d+(\.\d*)?$|^\.\d+$/.test(value)) return { ok: false, unknown: false };
    obj.values.set(spec.name, Number(value).toFixed(6));
  } else if (kind.startsWith('enum:')) {
    const allowed = kind.slice(5).split('|');
    const hit = allowed.find((a) => a.toLowerCase() === value.toLowerCase());
    if (!hit) {
      if (spec.name === 'auth_type') {
        return { ok: false, unknown: false, extra: ['WARNING', 'res_pjsip/config_auth.c',
          `Unknown authentication storage type '${value}' specified for auth_type`] };
      }
      return { ok: false, unknown: false };
    }
    obj.values.set(spec.name, hit);
  } else if (kind === 'callerid') obj.values.set(spec.name, formatCallerId(value));
  else if (kind === 'codecs') {
    const allowing = spec.name === 'allow';
    for (const part of value.split(',').map((p) => p.trim()).filter(Boolean)) {
      const name = part.toLowerCase();
      if (name === 'all') {
        obj.codecs = allowing ? [...KNOWN_CODECS] : [];
        continue;
      }
      if (!KNOWN_CODECS.includes(name)) {
        return { ok: false, unknown: false, extra: ['WARNING', 'format_cap.c',
          `Cannot ${allowing ? 'allow' : 'disallow'} unknown format '${part}'`] };
      }
      obj.codecs = obj.codecs.filter((c) => c !== name);
      if (allowing) obj.codecs.push(name);
    }
    obj.values.set('allow', obj.codecs.length ? `(${obj.codecs.join('|')})` : '(nothing)');
  } else if (spec.multi) {
    let item = value;
    if (spec.name === 'local_net') {
      const formatted = formatLocalNet(value);
      if (!formatted) return { ok: false, unknown: false };
      item = formatted;
    }
    const list = obj.lists.get(spec.name) ?? [];
    if (spec.name === 'contact') list.push(...value.split(',').map((c) => c.trim()).filter(Boolean));
    else list.push(item);
    obj.lists.set(spec.name, list);
    if (spec.key) obj.values.set(spec.name, list.join(','));
  } else obj.values.set(spec.name, value);
  return { ok: true };
}

/** Type-specific checks run after all options were set (the sorcery "apply" handlers). */
function applyHandler(obj: PjsipObject, log: LogFn): boolean {
  if (obj.type === 'auth') {
    // res_pjsip/config_auth.c auth_apply()
    if (!valueOf(obj, 'username')) {
      log('ERROR', 'res_pjsip/config_auth.c', `No authentication username for auth '${obj.id}'`);
      return false;
    }
    if (valueOf(obj, 'auth_type') === 'md5') {
      const cred = valueOf(obj, 'md5_cred') ?? '';
      if (!cred) {
        log('ERROR', 'res_pjsip/config_auth.c', `'md5' authentication specified but no md5_cred specified for auth '${obj.id}'`);
        return false;
      }
      if (cred.length !== 32) {
        log('ERROR', 'res_pjsip/config_auth.c',
          `'md5' authentication requires digest of size '32', but digest is '${cred.length}' in size for auth '${obj.id}'`);
        return false;
      }
    }
  }
  if (obj.type === 'transport') {
    const protocol = valueOf(obj, 'protocol') ?? 'udp';
    const bind = valueOf(obj, 'bind') ?? '';
    const formatted = formatBind(bind || '0.0.0.0', protocol);
    if (!formatted) return false;
    obj.values.set('bind', formatted);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// The res_pjsip module
// ---------------------------------------------------------------------------------------------

export interface ReachabilityChange {
  endpoint: string;
  status: 'Reachable' | 'Unreachable';
}

export class PjsipModule {
  endpoints = new Map<string, PjsipObject>();
  aors = new Map<string, PjsipObject>();
  auths = new Map<string, PjsipObject>();
  transports = new Map<string, PjsipObject>();
  /** Registered contacts live in astdb: they survive a restart and a broken config. */
  readonly contacts = new Map<string, Contact[]>();
  /** Endpoints removed during this run and re-added: "Invalid" until they register (e_7_restore.txt). */
  private invalid = new Set<string>();
  private seenThisRun = new Set<string>();
  private cache: Map<string, FileStamp> | undefined;
  /** How many times pjsip.conf was actually re-read (reloads skipped as unchanged do not count). */
  loads = 0;

  private readonly parser: AsteriskConfigParser;
  /** Lines the parser logged during the current load; repeated once per sorcery type. */
  private parseLog: Array<Parameters<LogFn>> = [];

  /**
   * `unknownOptions`: option names this build does not know, as an older Asterisk or one built
   * without a feature would not (e.g. remove_unavailable before 16.22/18.8).
   */
  constructor(configDir: string, private readonly log: LogFn, private readonly unknownOptions: ReadonlySet<string> = new Set()) {
    this.parser = new AsteriskConfigParser({
      configDir,
      log: (level, source, message) => {
        this.parseLog.push([level, source, message]);
      },
    });
  }

  /** A fresh start (module load): no previous objects, nothing to retain. */
  start(): ReachabilityChange[] {
    this.endpoints = new Map();
    this.aors = new Map();
    this.auths = new Map();
    this.transports = new Map();
    this.invalid = new Set();
    this.seenThisRun = new Set();
    this.cache = undefined;
    return this.load(true);
  }

  reload(): ReachabilityChange[] {
    return this.load(false);
  }

  private load(initial: boolean): ReachabilityChange[] {
    const systemNotice = () => {
      if (!initial) this.log('NOTICE', 'sorcery.c', "Type 'system' is not reloadable, maintaining previous values");
    };
    if (!initial && this.parser.unchanged('pjsip.conf', this.cache)) {
      systemNotice();
      return [];
    }
    // Parse once, but replay the parser's log lines once per sorcery type like Asterisk does.
    this.parseLog = [];
    const result = this.parser.load('pjsip.conf');
    const captured = this.parseLog;
    this.parseLog = [];
    if (result.status !== 'missing') this.cache = result.stamps;
    this.loads++;

    const before = this.reachability();
    const types = initial ? ['system', ...SORCERY_TYPES] : SORCERY_TYPES;
    const next: Partial<Record<ObjectType, Map<string, PjsipObject>>> = {};
    types.forEach((type, index) => {
      if (!initial && index === 8) systemNotice();
      for (const line of captured) this.log(...line);
      if (result.status === 'missing') {
        this.log('ERROR', 'res_sorcery_config.c', "Unable to load config file 'pjsip.conf'");
        return;
      }
      if (result.status === 'invalid') {
        this.log('ERROR', 'res_sorcery_config.c', "Contents of config file 'pjsip.conf' are invalid and cannot be parsed");
        return;
      }
      if (type === 'endpoint' || type === 'aor' || type === 'auth' || type === 'transport') {
        const loaded = this.loadType(type, result.categories);
        if (loaded) next[type] = loaded;
      }
    });

    if (next.transport) this.transports = this.mergeTransports(next.transport);
    if (next.auth) this.auths = next.auth;
    if (next.aor) {
      for (const id of this.aors.keys()) {
        if (!next.aor.has(id)) {
          for (const c of this.contacts.get(id) ?? []) {
            this.log('VERBOSE', 'res_pjsip/pjsip_options.c', `Contact ${id}/${c.uri} has been deleted`);
          }
          this.contacts.delete(id);
        }
      }
      this.aors = next.aor;
    }
    if (next.endpoint) {
      for (const id of next.endpoint.keys()) {
        if (!this.endpoints.has(id) && this.seenThisRun.has(id)) this.invalid.add(id);
        this.seenThisRun.add(id);
      }
      this.endpoints = next.endpoint;
    }
    return this.reachabilityChanges(before);
  }

  /** res_sorcery_config.c sorcery_config_internal_load() for one type. null = keep the old objects. */
  private loadType(type: ObjectType, categories: ConfigCategory[]): Map<string, PjsipObject> | null {
    const old = this.mapFor(type);
    const objects = new Map<string, PjsipObject>();
    for (const cat of categories) {
      if (cat.template) continue;
      const typeVar = cat.vars.find((v) => v.name.toLowerCase() === 'type');
      if (!typeVar || typeVar.value !== type) continue;
      if (objects.has(cat.name)) {
        this.log('ERROR', 'res_sorcery_config.c',
          `Config file 'pjsip.conf' could not be loaded; configuration contains a duplicate object: '${cat.name}' of type '${type}'`);
        return null;
      }
      let obj = this.build(type, cat.name, cat.vars);
      if (!obj) {
        this.log('ERROR', 'res_sorcery_config.c',
          `Could not create an object of type '${type}' with id '${cat.name}' from configuration file 'pjsip.conf'`);
        const existing = old.get(cat.name);
        if (!existing) continue;
        this.log('NOTICE', 'res_sorcery_config.c', `Retaining existing configuration for object of type '${type}' with id '${cat.name}'`);
        obj = existing;
      }
      objects.set(cat.name, obj);
    }
    return objects;
  }

  private build(type: ObjectType, id: string, vars: ConfigVariable[]): PjsipObject | null {
    const obj = newObject(type, id);
    const specs = OPTIONS[type];
    for (const v of vars) {
      const name = v.name.toLowerCase();
      if (name === 'type') continue;
      const spec = this.unknownOptions.has(name) ? undefined : specs.get(name);
      if (!spec) {
        // The file name really is empty in Asterisk's message (e_1_unknown_option_existing_endpoint.txt).
        this.log('ERROR', 'config_options.c', `Could not find option suitable for category '${id}' named '${v.name}' at line ${v.line} of `);
        return null;
      }
      const r = applyOption(obj, spec, v.value);
      if (!r.ok) {
        if (r.extra) this.log(...(r.extra as [Parameters<LogFn>[0], string, string]));
        this.log('ERROR', 'config_options.c', `Error parsing ${v.name}=${v.value} at line ${v.line} of `);
        return null;
      }
    }
    return applyHandler(obj, this.log) ? obj : null;
  }

  private mapFor(type: ObjectType): Map<string, PjsipObject> {
    return type === 'endpoint' ? this.endpoints : type === 'aor' ? this.aors : type === 'auth' ? this.auths : this.transports;
  }

  /** config_transport.c: without allow_reload, protocol/bind/TLS/ToS/CoS stay as they were. */
  private mergeTransports(next: Map<string, PjsipObject>): Map<string, PjsipObject> {
    const merged = new Map<string, PjsipObject>();
    for (const [id, fresh] of next) {
      const old = this.transports.get(id);
      if (!old || old === fresh || valueOf(fresh, 'allow_reload') === 'true') {
        merged.set(id, fresh);
        continue;
      }
      const changed = TRANSPORT_NOT_RELOADABLE.some((k) => valueOf(old, k) !== valueOf(fresh, k));
      // README: with local_net/external_* set, EVERY re-read logs the notice, changed or not.
      const hasNat = (fresh.lists.get('local_net')?.length ?? 0) > 0
        || !!valueOf(fresh, 'external_media_address') || !!valueOf(fresh, 'external_signaling_address');
      if (changed || hasNat) {
        this.log('NOTICE', 'res_pjsip/config_transport.c',
          `Transport '${id}' is not fully reloadable, not reloading: protocol, bind, TLS (everything but certificate and private key if filename is unchanged), TCP, ToS, or CoS options.`);
      }
      const keep = newObject('transport', id);
      keep.values = new Map(fresh.values);
      keep.lists = new Map(fresh.lists);
      for (const k of TRANSPORT_NOT_RELOADABLE) keep.values.set(k, valueOf(old, k) ?? '');
      merged.set(id, keep);
    }
    return merged;
  }

  // ------------------------------------------------------------------------------------------
  // Contacts and device state
  // ------------------------------------------------------------------------------------------

  aorNames(endpoint: PjsipObject): string[] {
    return (valueOf(endpoint, 'aors') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  }

  authNames(endpoint: PjsipObject, option: 'auth' | 'outbound_auth'): string[] {
    return (valueOf(endpoint, option) ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  }

  /** Contacts of an aor as `aor/uri` (static `contact=` lines first). */
  contactIds(aorId: string): string[] {
    const aor = this.aors.get(aorId);
    if (!aor) return [];
    const permanent = aor.lists.get('contact') ?? [];
    const dynamic = (this.contacts.get(aorId) ?? []).map((c) => c.uri);
    return [...permanent, ...dynamic].map((uri) => `${aorId}/${uri}`);
  }

  deviceState(id: string): string {
    const ep = this.endpoints.get(id);
    if (!ep) return 'Invalid';
    if (this.invalid.has(id)) return 'Invalid';
    const hasContact = this.aorNames(ep).some((a) => this.aors.has(a) && (this.contacts.get(a)?.length ?? 0) > 0);
    return hasContact ? 'Not in use' : 'Unavailable';
  }

  private reachability(): Map<string, boolean> {
    const r = new Map<string, boolean>();
    for (const id of this.endpoints.keys()) r.set(id, this.deviceState(id) === 'Not in use');
    return r;
  }

  private reachabilityChanges(before: Map<string, boolean>): ReachabilityChange[] {
    const after = this.reachability();
    const changes: ReachabilityChange[] = [];
    const ids = [...new Set([...before.keys(), ...after.keys()])].sort();
    for (const id of ids) {
      const was = before.get(id) ?? false;
      const now = after.get(id) ?? false;
      if (was === now) continue;
      const status = now ? 'Reachable' : 'Unreachable';
      this.log('VERBOSE', 'res_pjsip/pjsip_configuration.c', `Endpoint ${id} is now ${status}`);
      changes.push({ endpoint: id, status });
    }
    return changes;
  }

  /** A REGISTER was accepted: returns the events Asterisk would publish. */
  register(aor: string, uri: string, userAgent = 'sipp-test'): ReachabilityChange[] {
    const before = this.reachability();
    const list = this.contacts.get(aor) ?? [];
    if (!list.some((c) => c.uri === uri)) list.push({ aor, uri, userAgent });
    this.contacts.set(aor, list);
    for (const [id, ep] of this.endpoints) if (this.aorNames(ep).includes(aor)) this.invalid.delete(id);
    return this.reachabilityChanges(before);
  }

  unregister(aor: string, uri: string): ReachabilityChange[] {
    const before = this.reachability();
    const list = (this.contacts.get(aor) ?? []).filter((c) => c.uri !== uri);
    if (list.length) this.contacts.set(aor, list);
    else this.contacts.delete(aor);
    this.log('VERBOSE', 'res_pjsip_registrar.c', `Removed contact '${uri}' from AOR '${aor}' due to request`);
    return this.reachabilityChanges(before);
  }

  /** Endpoints whose aors reference `aor` (for ContactStatus events). */
  endpointsOfAor(aor: string): string[] {
    return [...this.endpoints.values()].filter((e) => this.aorNames(e).includes(aor)).map((e) => e.id).sort();
  }

  // ------------------------------------------------------------------------------------------
  // AMI renderings (field order and formats from m_*.txt, c_basic.txt, d_add6003.txt)
  // ------------------------------------------------------------------------------------------

  objectFields(obj: PjsipObject): Array<[string, string]> {
    const specs = obj.type === 'endpoint' ? ENDPOINT_OPTIONS : obj.type === 'aor' ? AOR_OPTIONS
      : obj.type === 'auth' ? AUTH_OPTIONS : TRANSPORT_OPTIONS;
    const out: Array<[string, string]> = [['ObjectType', obj.type], ['ObjectName', obj.id]];
    const seen = new Set<string>();
    for (const spec of specs) {
      if (!spec.key || seen.has(spec.key)) continue;
      seen.add(spec.key);
      let value = valueOf(obj, spec.name) ?? spec.dflt;
      if (obj.type === 'aor' && spec.name === 'contact') value = this.contactIds(obj.id).join(',');
      out.push([spec.key, value]);
    }
    return out;
  }

  endpointListItem(ep: PjsipObject): Array<[string, string]> {
    const fields: Array<[string, string]> = [
      ['ObjectType', 'endpoint'],
      ['ObjectName', ep.id],
      ['Transport', valueOf(ep, 'transport') ?? ''],
      ['Aor', valueOf(ep, 'aors') ?? ''],
      ['Auths', this.authNames(ep, 'auth').join(',')],
      ['OutboundAuths', this.authNames(ep, 'outbound_auth').join(',')],
    ];
    // One Contacts header per EXISTING aor, each contact followed by ',' (pjsip_configuration.c
    // sip_endpoints_aors_ami + ast_sip_contact_to_str); none at all for a dangling aor.
    for (const aor of this.aorNames(ep)) {
      if (!this.aors.has(aor)) continue;
      fields.push(['Contacts', this.contactIds(aor).map((c) => `${c},`).join('')]);
    }
    fields.push(['DeviceState', this.deviceState(ep.id)], ['ActiveChannels', '0']);
    return fields;
  }

  endpointDetailEvents(ep: PjsipObject): Array<{ event: string; fields: Array<[string, string]> }> {
    const events: Array<{ event: string; fields: Array<[string, string]> }> = [];
    events.push({
      event: 'EndpointDetail',
      fields: [...this.objectFields(ep), ['DeviceState', this.deviceState(ep.id)], ['ActiveChannels', '0']],
    });
    for (const name of [...this.authNames(ep, 'auth'), ...this.authNames(ep, 'outbound_auth')]) {
      const auth = this.auths.get(name);
      if (auth) events.push({ event: 'AuthDetail', fields: [...this.objectFields(auth), ['EndpointName', ep.id]] });
    }
    const transportName = valueOf(ep, 'transport') ?? '';
    const transport = transportName ? this.transports.get(transportName) : undefined;
    if (transport) {
      // Not in the recorded transcripts (no endpoint there had transport= set); layout follows the
      // other *Detail events.
      events.push({ event: 'TransportDetail', fields: [...this.objectFields(transport), ['EndpointName', ep.id]] });
    }
    for (const name of this.aorNames(ep)) {
      const aor = this.aors.get(name);
      if (!aor) continue;
      const total = this.contactIds(name).length;
      const permanent = aor.lists.get('contact')?.length ?? 0;
      events.push({
        event: 'AorDetail',
        fields: [
          ...this.objectFields(aor),
          ['TotalContacts', String(total)],
          ['ContactsRegistered', String(total - permanent)],
          ['EndpointName', ep.id],
        ],
      });
    }
    return events;
  }

  // ------------------------------------------------------------------------------------------
  // CLI renderings (widths measured from c_basic.txt and n_*.txt)
  // ------------------------------------------------------------------------------------------

  cliShowEndpoints(): string[] {
    const out = [
      '',
      ' Endpoint:  <Endpoint/CID.....................................>  <State.....>  <Channels.>',
      '    I/OAuth:  <AuthId/UserName...........................................................>',
      '        Aor:  <Aor............................................>  <MaxContact>',
      '      Contact:  <Aor/ContactUri..........................> <Hash....> <Status> <RTT(ms)..>',
      '  Transport:  <TransportId........>  <Type>  <cos>  <tos>  <BindAddress..................>',
      '   Identify:  <Identify/Endpoint.........................................................>',
      '        Match:  <criteria.........................>',
      '    Channel:  <ChannelId......................................>  <State.....>  <Time.....>',
      '        Exten: <DialedExten...........>  CLCID: <ConnectedLineCID.......>',
      '==========================================================================================',
      '',
    ];
    const ids = [...this.endpoints.keys()].sort();
    if (ids.length === 0) return ['', 'No objects found.', ''];
    for (const id of ids) {
      const ep = this.endpoints.get(id) as PjsipObject;
      const cid = valueOf(ep, 'callerid') ?? '<unknown>';
      const num = /<([^>]*)>$/.exec(cid)?.[1] ?? (/^[0-9*#+]+$/.test(cid) ? cid : '');
      const printName = num && cid !== '<unknown>' ? `${id}/${num}` : id;
      const busyAt = Number(valueOf(ep, 'device_state_busy_at') ?? '0');
      out.push(` Endpoint:  ${pad(printName, 51)}  ${pad(this.deviceState(id), 12)}  0 of ${busyAt ? busyAt : 'inf'}`);
      for (const [dir, option] of [['Out', 'outbound_auth'], ['In', 'auth']] as const) {
        for (const name of this.authNames(ep, option)) {
          const auth = this.auths.get(name);
          if (auth) out.push(`${`${dir}Auth`.padStart(11)}:  ${name}/${valueOf(auth, 'username') ?? ''}`);
        }
      }
      for (const aorName of this.aorNames(ep)) {
        const aor = this.aors.get(aorName);
        if (!aor) continue;
        out.push(`        Aor:  ${pad(aorName, 39)} ${(valueOf(aor, 'max_contacts') ?? '0').padStart(12)}`);
        for (const c of this.contacts.get(aorName) ?? []) {
          const hash = createHash('md5').update(c.uri).digest('hex').slice(0, 10);
          const width = 62 - 13 - 9 - aorName.length + 1;
          out.push(`      Contact:  ${aorName}/${pad(c.uri, width)} ${pad(hash, 10)} ${pad('NonQual', 7)} ${'nan'.padStart(11)}`);
        }
      }
      const tName = valueOf(ep, 'transport') ?? '';
      const t = tName ? this.transports.get(tName) : undefined;
      if (t) out.push(`  ${this.transportLine(t)}`);
      out.push('');
    }
    out.push('', `Objects found: ${ids.length}`, '');
    return out;
  }

  private transportLine(t: PjsipObject): string {
    return `Transport:  ${pad(t.id, 21)}  ${(valueOf(t, 'protocol') ?? 'udp').padStart(6)}  ${(valueOf(t, 'cos') ?? '0').padStart(5)}  ${(valueOf(t, 'tos') ?? '0').padStart(5)}  ${valueOf(t, 'bind') ?? ''}`;
  }

  cliShowTransport(name: string): string[] {
    const t = this.transports.get(name);
    if (!t) return [`Unable to find object ${name}.`, ''];
    const out = [
      '',
      'Transport:  <TransportId........>  <Type>  <cos>  <tos>  <BindAddress....................>',
      '==========================================================================================',
      '',
      this.transportLine(t),
      '',
      ' ParameterName               : ParameterValue',
      ' =======================================================',
    ];
    for (const spec of TRANSPORT_OPTIONS) {
      if (spec.name === 'local_net') {
        for (const net of t.lists.get('local_net') ?? []) out.push(` ${pad('local_net', 27)} : ${net}`);
        continue;
      }
      out.push(` ${pad(spec.name, 27)} : ${valueOf(t, spec.name) ?? spec.dflt}`);
    }
    out.push('');
    return out;
  }
}

function pad(s: string, width: number): string {
  return s.length >= width ? s : s + ' '.repeat(width - s.length);
}
