/**
 * Checks that span fields or files, run after every file passed its schema. Each one exists
 * because getting it wrong silently breaks calls rather than failing loudly in Asterisk.
 */
import type { ConferenceData, ExtensionData, SiteFileData } from '../../schemas/config-repo.js';
import type { VideoMode } from '../model.js';
import { fieldPath, foundValue, type ConfigIssue } from './issues.js';
import { passwordWeakness } from './password-policy.js';
import { locate, type ParsedYaml } from './yaml-document.js';

/** An extension entry together with where it was written. */
export interface ExtensionEntry {
  data: ExtensionData;
  parsed: ParsedYaml;
  path: (string | number)[];
}

/** Ports each call uses per media stream: two call legs, each RTP + RTCP. */
const PORTS_PER_CALL_STREAM = 4;
/** Asterisk's own AMI port; RTP must never be handed out on it. */
const AMI_PORT = 5038;

function issueAt(
  parsed: ParsedYaml,
  path: (string | number)[],
  message: string,
  extra: { found?: unknown; severity?: 'error' | 'warning'; keyOf?: boolean } = {},
): ConfigIssue {
  const pos = locate(parsed, path, extra.keyOf ?? false);
  const issue: ConfigIssue = {
    severity: extra.severity ?? 'error',
    file: parsed.file,
    line: pos.line,
    column: pos.column,
    field: fieldPath(path),
    message,
  };
  const found = foundValue(extra.found);
  if (found !== undefined) issue.found = found;
  return issue;
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [net, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  if (bits === 0) return true;
  const mask = 2 ** 32 - 2 ** (32 - bits);
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(net!) & mask) >>> 0;
}

/** Address blocks that can never be an Elastic IP. */
const NON_PUBLIC = [
  ['0.0.0.0/8', 'a reserved'],
  ['10.0.0.0/8', 'a private (RFC 1918)'],
  ['100.64.0.0/10', 'a carrier-grade NAT (RFC 6598)'],
  ['127.0.0.0/8', 'a loopback'],
  ['169.254.0.0/16', 'a link-local'],
  ['172.16.0.0/12', 'a private (RFC 1918)'],
  ['192.168.0.0/16', 'a private (RFC 1918)'],
  ['224.0.0.0/3', 'a multicast or reserved'],
] as const;

/**
 * Why `ip` can never be an Elastic IP ("a private (RFC 1918)", ...), or undefined for a public
 * address. The same rule for pbx.yaml and for --external-address.
 */
export function nonPublicAddressKind(ip: string): string | undefined {
  return NON_PUBLIC.find(([cidr]) => inCidr(ip, cidr))?.[1];
}

export function checkSite(site: SiteFileData, parsed: ParsedYaml): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { network, rtp } = site;

  // external_address: the address put into SDP. A private one means one-way audio for every phone
  // outside the VPC.
  let externalIsPublic = network.external_address !== 'auto';
  if (network.external_address !== 'auto') {
    const ext = network.external_address;
    const kind = nonPublicAddressKind(ext);
    if (kind) {
      externalIsPublic = false;
      issues.push(
        issueAt(
          parsed,
          ['network', 'external_address'],
          `is ${kind} address; it must be the instance's public Elastic IP (or "auto"), otherwise phones outside the VPC get one-way audio`,
          { found: ext },
        ),
      );
    }
  }
  network.local_net.forEach((cidr, i) => {
    if (cidr.endsWith('/0')) {
      issues.push(
        issueAt(
          parsed,
          ['network', 'local_net', i],
          'covers every address: Asterisk would treat every phone as local and never use the external address (one-way audio); list only the VPC CIDR',
          { found: cidr },
        ),
      );
    } else if (externalIsPublic && inCidr(network.external_address, cidr)) {
      issues.push(
        issueAt(parsed, ['network', 'local_net', i], `contains the external address ${network.external_address}; local_net must list only the VPC's private range`, {
          found: cidr,
        }),
      );
    }
  });

  // Two TCP-based listeners cannot share a port.
  const { tcp, tls } = network.transports;
  if (tcp && tls && tcp.port === tls.port && (tcp.bind === tls.bind || tcp.bind === '0.0.0.0' || tls.bind === '0.0.0.0')) {
    issues.push(
      issueAt(parsed, ['network', 'transports', 'tls', 'port'], `is also the tcp transport's port; TCP and TLS need different ports (5060 and 5061)`, {
        found: tls.port,
      }),
    );
  }

  // RTP range. rtp.conf silently falls back to 5000-31000 when rtpstart >= rtpend (res_rtp_asterisk),
  // so anything odd is refused here, where the operator sees it.
  const rtpIssue = (field: 'port_start' | 'port_end', message: string, found: unknown) =>
    issues.push(issueAt(parsed, ['rtp', field], message, { found }));
  if (rtp.port_start < 1024) rtpIssue('port_start', 'expected 1024 or more: lower ports are privileged and used by other services', rtp.port_start);
  if (rtp.port_start % 2 !== 0) rtpIssue('port_start', 'expected an even port: RTP uses even ports and RTCP the odd port above', rtp.port_start);
  if (rtp.port_end <= rtp.port_start) {
    rtpIssue('port_end', `expected a port above port_start (${rtp.port_start}); Asterisk would silently fall back to 5000-31000`, rtp.port_end);
  } else {
    const size = rtp.port_end - rtp.port_start + 1;
    const hasVideo = Object.values(site.codec_profiles).some((p) => p.video !== undefined);
    const streams = hasVideo ? 2 : 1;
    const needed = rtp.expected_calls * PORTS_PER_CALL_STREAM * streams;
    if (size < needed) {
      rtpIssue(
        'port_end',
        `the range holds ${size} ports but ${rtp.expected_calls} calls${hasVideo ? ' with video' : ''} need ${needed} (${PORTS_PER_CALL_STREAM} per call per media stream); widen the range or lower rtp.expected_calls`,
        rtp.port_end,
      );
    }
    for (const [proto, t] of Object.entries(network.transports)) {
      if (t && t.port >= rtp.port_start && t.port <= rtp.port_end) {
        issues.push(
          issueAt(parsed, ['network', 'transports', proto, 'port'], `is inside the RTP range ${rtp.port_start}-${rtp.port_end}; SIP and media ports must not overlap`, {
            found: t.port,
          }),
        );
      }
    }
    if (AMI_PORT >= rtp.port_start && AMI_PORT <= rtp.port_end) {
      rtpIssue('port_start', `the RTP range ${rtp.port_start}-${rtp.port_end} contains the AMI port ${AMI_PORT}`, rtp.port_start);
    }
  }

  // Names used inside the site file.
  const contexts = Object.keys(site.dialplan.contexts);
  if (!contexts.includes(site.defaults.context)) {
    issues.push(
      issueAt(parsed, ['defaults', 'context'], `is not a context declared under dialplan.contexts (declared: ${contexts.join(', ')})`, {
        found: site.defaults.context,
      }),
    );
  }
  const profiles = Object.keys(site.codec_profiles);
  if (site.defaults.codec_profile !== undefined && !profiles.includes(site.defaults.codec_profile)) {
    issues.push(
      issueAt(parsed, ['defaults', 'codec_profile'], `is not a profile under codec_profiles (defined: ${profiles.join(', ') || 'none'})`, {
        found: site.defaults.codec_profile,
      }),
    );
  }
  for (const [name, ctx] of Object.entries(site.dialplan.contexts)) {
    ctx.includes.forEach((inc, i) => {
      if (inc === name) {
        issues.push(issueAt(parsed, ['dialplan', 'contexts', name, 'includes', i], 'a context cannot include itself', { found: inc }));
      }
    });
  }
  return issues;
}

export function checkExtensions(site: SiteFileData, sitePath: ParsedYaml, entries: ExtensionEntry[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const profiles = Object.keys(site.codec_profiles);
  const contexts = Object.keys(site.dialplan.contexts);
  const featureCodes = new Map(Object.entries(site.dialplan.feature_codes).map(([k, v]) => [v, k]));
  const seen = new Map<string, ExtensionEntry>();

  for (const entry of entries) {
    const { data, parsed, path } = entry;
    const at = (field: string, message: string, extra: Parameters<typeof issueAt>[3] = {}) =>
      issues.push(issueAt(parsed, [...path, field], message, extra));

    const first = seen.get(data.number);
    if (first) {
      const pos = locate(first.parsed, [...first.path, 'number']);
      at('number', `extension ${data.number} is defined twice; the other one is at ${first.parsed.file}:${pos.line}:${pos.column}`, {
        found: data.number,
      });
    } else {
      seen.set(data.number, entry);
    }

    const code = featureCodes.get(data.number);
    if (code !== undefined) {
      at('number', `collides with the ${code} feature code (dialplan.feature_codes.${code}); pick another number or feature code`, {
        found: data.number,
      });
    }

    const given = (['secret', 'md5', 'password'] as const).filter((k) => data[k] !== undefined);
    if (given.length === 0) {
      issues.push(
        issueAt(parsed, path, `extension ${data.number} has no credential: set one of secret (a file on the host), md5, or password`),
      );
    } else if (given.length > 1) {
      at(given[1]!, `extension ${data.number} sets both ${given[0]} and ${given[1]}; set exactly one credential`, { keyOf: true });
    }
    if (data.password !== undefined && given.length === 1) {
      const weakness = passwordWeakness(data.password, data.number);
      if (weakness) {
        at('password', `password ${weakness}; use at least 12 characters mixing letters and digits, or better a secret on the host`);
      } else {
        at('password', 'a plain-text password is in git; prefer `secret:` (a file on the host) or `md5:`', { severity: 'warning' });
      }
    }

    const profile = data.codec_profile ?? site.defaults.codec_profile;
    if (profile === undefined) {
      issues.push(
        issueAt(parsed, path, `extension ${data.number} has no codec profile: set codec_profile here or defaults.codec_profile in ${sitePath.file}`),
      );
    } else if (!profiles.includes(profile)) {
      if (data.codec_profile !== undefined) {
        at('codec_profile', `is not a profile under codec_profiles (defined: ${profiles.join(', ') || 'none'})`, { found: profile });
      }
    }
    if (data.context !== undefined && !contexts.includes(data.context)) {
      at('context', `is not a context declared under dialplan.contexts (declared: ${contexts.join(', ')})`, { found: data.context });
    }
  }
  return issues;
}

/**
 * A room's video mode: as written, else follow_talker when its codec profile carries video (one
 * stream to every participant, what endpoints with max_video_streams=1 can receive), else none.
 */
export function conferenceVideoMode(site: SiteFileData, room: ConferenceData): VideoMode {
  if (room.video_mode !== undefined) return room.video_mode;
  const profile = site.codec_profiles[room.codec_profile ?? site.defaults.codec_profile ?? ''];
  return profile?.video !== undefined ? 'follow_talker' : 'none';
}

/** The video modes that show one participant's video to everyone, chosen by who is marked. */
const MARKED_VIDEO_MODES: readonly VideoMode[] = ['last_marked', 'first_marked'];

/**
 * Conference rooms: a number dials exactly one thing (an extension, a feature code or a room), and
 * a room's video settings must be something ConfBridge and the phones can actually do.
 */
export function checkConferences(site: SiteFileData, parsed: ParsedYaml, entries: ExtensionEntry[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const profiles = site.codec_profiles;
  const contexts = Object.keys(site.dialplan.contexts);
  const featureCodes = new Map(Object.entries(site.dialplan.feature_codes).map(([k, v]) => [v, k]));
  const extensionsByNumber = new Map<string, ExtensionEntry>();
  for (const e of entries) if (!extensionsByNumber.has(e.data.number)) extensionsByNumber.set(e.data.number, e);
  const seen = new Map<string, number>();

  site.conferences.forEach((room, i) => {
    const path = ['conferences', i];
    const at = (field: string, message: string, extra: Parameters<typeof issueAt>[3] = {}) =>
      issues.push(issueAt(parsed, [...path, field], message, extra));

    const first = seen.get(room.number);
    if (first !== undefined) {
      const pos = locate(parsed, ['conferences', first, 'number']);
      at('number', `conference room ${room.number} is defined twice; the other one is at ${parsed.file}:${pos.line}:${pos.column}`, { found: room.number });
    } else {
      seen.set(room.number, i);
    }
    const ext = extensionsByNumber.get(room.number);
    if (ext) {
      const pos = locate(ext.parsed, [...ext.path, 'number']);
      at(
        'number',
        `collides with extension ${room.number}${ext.data.enabled ? '' : ' (disabled)'} at ${ext.parsed.file}:${pos.line}:${pos.column}; a number dials one thing: give the room or the extension another number`,
        { found: room.number },
      );
    }
    const code = featureCodes.get(room.number);
    if (code !== undefined) {
      at('number', `collides with the ${code} feature code (dialplan.feature_codes.${code}); pick another number for the room or another feature code`, {
        found: room.number,
      });
    }

    room.contexts?.forEach((ctx, j) => {
      if (!contexts.includes(ctx)) {
        issues.push(issueAt(parsed, [...path, 'contexts', j], `is not a context declared under dialplan.contexts (declared: ${contexts.join(', ')})`, { found: ctx }));
      }
    });

    const profileName = room.codec_profile ?? site.defaults.codec_profile;
    const profile = profileName === undefined ? undefined : profiles[profileName];
    if (profileName === undefined) {
      issues.push(issueAt(parsed, path, `conference room ${room.number} has no codec profile: set codec_profile here or defaults.codec_profile`));
    } else if (!profile) {
      if (room.codec_profile !== undefined) {
        at('codec_profile', `is not a profile under codec_profiles (defined: ${Object.keys(profiles).join(', ') || 'none'})`, { found: profileName });
      }
    }

    // What cannot work, whatever the phones (configs/samples/confbridge.conf.sample, video_mode).
    const mode = conferenceVideoMode(site, room);
    const hasModerators = room.moderator_pin !== undefined;
    if (profile && mode !== 'none' && profile.video === undefined) {
      at(
        room.video_mode !== undefined ? 'video_mode' : 'codec_profile',
        `video_mode ${mode} needs video, but codec profile ${profileName} has none (ConfBridge passes video through, it never creates any); use a codec profile with video: or set video_mode: none`,
        { found: room.video_mode ?? profileName },
      );
    }
    if (MARKED_VIDEO_MODES.includes(mode) && !hasModerators) {
      at(
        'video_mode',
        `${mode} shows the video of a marked participant, and without moderator_pin nobody joins marked, so nobody would ever see video; set moderator_pin or use follow_talker`,
        { found: mode },
      );
    }
    if (mode === 'sfu' && profile?.video !== undefined && (profile.max_video_streams ?? 1) < 2) {
      at(
        'video_mode',
        `sfu sends every participant's video as a stream of its own, but codec profile ${profileName} allows max_video_streams ${profile.max_video_streams ?? 1}; ` +
          'use a profile with max_video_streams of 2 or more (and phones that handle several video streams, such as WebRTC clients), or follow_talker for one stream',
        { found: mode },
      );
    }
    for (const flag of ['wait_marked', 'end_marked'] as const) {
      if (room[flag] && !hasModerators) {
        at(flag, `waits for or ends with a moderator (a marked participant), but the room has no moderator_pin, so nobody joins marked; set moderator_pin or remove ${flag}`, { keyOf: true });
      }
    }
    if (room.pin && room.moderator_pin && room.pin.secret === room.moderator_pin.secret) {
      at('moderator_pin', `names the same secret as pin ("${room.pin.secret}"): every participant would join as moderator; give moderators a PIN of their own`, {
        found: room.moderator_pin.secret,
      });
    }

    // What works only for some phones: warn, naming them.
    if (profile?.video !== undefined && mode !== 'none') {
      const reach = new Set(room.contexts ?? contexts);
      const roomCodec = profile.video[0]!;
      const fewStreams: string[] = [];
      const otherCodec: string[] = [];
      for (const e of entries) {
        if (!e.data.enabled || !reach.has(e.data.context ?? site.defaults.context)) continue;
        const own = profiles[e.data.codec_profile ?? site.defaults.codec_profile ?? ''];
        if (own?.video === undefined) continue;
        if (own.video[0] !== roomCodec) otherCodec.push(e.data.number);
        if (mode === 'sfu' && (own.max_video_streams ?? 1) < 2) fewStreams.push(e.data.number);
      }
      const list = (xs: string[]) => xs.slice(0, 10).join(', ') + (xs.length > 10 ? ` and ${xs.length - 10} more` : '');
      if (otherCodec.length > 0) {
        at(
          'codec_profile',
          `extensions ${list(otherCodec)} can dial this room but prefer another video codec than its ${roomCodec}; ConfBridge does not transcode video, so participants see each other only when their phones settle on one codec`,
          { severity: 'warning', keyOf: room.codec_profile !== undefined },
        );
      }
      if (fewStreams.length > 0) {
        at(
          'video_mode',
          `extensions ${list(fewStreams)} can dial this sfu room with max_video_streams below 2: they receive one participant's video at most`,
          { severity: 'warning', found: mode },
        );
      }
    }
  });
  return issues;
}
