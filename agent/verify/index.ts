/**
 * verify: read the live state back through AMI and compare it with what was just written. An AMI
 * Reload answers Success even when Asterisk rejected the new objects and kept the old ones
 * (reference/asterisk-20: unknown option, missing `]`, duplicate sections), so this is the only
 * proof that a change took.
 *
 * Cost is bounded by the change, not by the PBX: one endpoint list, then one detail read per
 * changed endpoint (and per added endpoint up to a limit), never one per unchanged endpoint.
 */
import { AmiError, header, headerAll, type AmiHeaders, type EndpointDetails } from '../asterisk/ami.js';
import type { AsteriskControl } from '../asterisk/control.js';
import { comparePjsip, parsePjsipObjects, type PjsipComparison, type PjsipObject } from '../plan/objects.js';
import type { AsteriskModule } from '../managed-files.js';
import { compareDialplan, type DialplanComparison, type DialplanEntry } from '../plan/dialplan.js';
import { EXTENSIONS_CONTEXT } from '../render/extensions.js';
import { VOICEMAIL_CONTEXT } from '../render/voicemail.js';

/** A module whose file changed: the body Asterisk had before and the one it should have now. */
export interface ModuleChange {
  module: AsteriskModule;
  before: string;
  after: string;
  /** For res_pjsip, the comparison of before and after if already computed (it is not cheap). */
  pjsip?: PjsipComparison;
  /** For pbx_config, likewise. */
  dialplan?: DialplanComparison;
  /**
   * For res_pjsip applied as live objects: removed extensions that stay listed until the fold,
   * locked out with this credential (plan/live-objects.ts). Verified by their auth instead.
   */
  lockedOut?: { numbers: ReadonlySet<string>; credential: string };
}

export interface Mismatch {
  /** e.g. `endpoint 1002`, `transport transport-udp`, `rtp.conf`. */
  object: string;
  field: string;
  expected: string;
  actual: string;
}

export interface VerifyResult {
  ok: boolean;
  mismatches: Mismatch[];
  /** Transport settings that only a restart applies, found still old (not a failure). */
  restartPending: string[];
  /** How much was read back, for the log line. */
  checked: { endpointsListed: number; endpointDetails: number; commands: number };
}

export interface VerifyOptions {
  /** Added endpoints read back in detail at most (changed ones always are). */
  detailLimit: number;
  /**
   * Endpoints that were live before the change without being the agent's (the operator's own):
   * their staying present is not a failed removal.
   */
  foreign?: ReadonlySet<string>;
}

const TRUE = /^(yes|true|on|1)$/i;
const FALSE = /^(no|false|off|0)$/i;

/** `max_video_streams` → `MaxVideoStreams`, the header name Asterisk uses in *Detail events. */
function headerName(option: string): string {
  return option
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

function sameValue(expected: string, actual: string | undefined): boolean {
  if (actual === undefined) return false;
  if (TRUE.test(expected)) return TRUE.test(actual);
  if (FALSE.test(expected)) return FALSE.test(actual);
  return expected === actual;
}

function optionsOf(obj: PjsipObject): Array<[string, string]> {
  return obj.options.map((line) => {
    const i = line.indexOf('=');
    return [line.slice(0, i), line.slice(i + 1)];
  });
}

class Checker {
  readonly mismatches: Mismatch[] = [];
  readonly restartPending: string[] = [];
  readonly checked = { endpointsListed: 0, endpointDetails: 0, commands: 0 };

  constructor(readonly asterisk: AsteriskControl, readonly options: VerifyOptions) {}

  mismatch(object: string, field: string, expected: string, actual: string | undefined) {
    this.mismatches.push({ object, field, expected, actual: actual === undefined ? '(absent)' : actual === '' ? '(empty)' : actual });
  }

  async command(text: string): Promise<{ ok: boolean; lines: string[] }> {
    this.checked.commands++;
    try {
      return { ok: true, lines: await this.asterisk.command(text) };
    } catch (e) {
      // Losing Asterisk is not a verdict on the config: let the caller see it as such.
      if (e instanceof AmiError && !['ami.command_failed', 'ami.no_such_command'].includes(e.code)) throw e;
      const response = (e as { response?: { headers?: AmiHeaders } }).response;
      const lines = response?.headers ? headerAll(response.headers, 'Output') : [(e as Error).message];
      return { ok: false, lines };
    }
  }

  /** Compares the options we rendered for one object with a *Detail event's headers. */
  compareObject(object: string, expected: PjsipObject, live: AmiHeaders | undefined) {
    if (!live) return this.mismatch(object, 'presence', 'present', 'missing');
    const allow: string[] = [];
    for (const [key, value] of optionsOf(expected)) {
      if (key === 'disallow') continue;
      if (key === 'allow') {
        allow.push(value);
        continue;
      }
      const actual = header(live, headerName(key));
      if (key === 'callerid') {
        // Asterisk shows `"Name" <num>`, or only `num` when there is no name (ast_callerid_merge);
        // the number is what routing and display depend on.
        const num = /<([^>]*)>/.exec(value)?.[1];
        if (num === undefined || !(actual === num || actual?.endsWith(`<${num}>`))) this.mismatch(object, 'Callerid', value, actual);
      } else if (key === 'md5_cred') {
        if (actual !== this.asterisk.secretFingerprint(value)) this.mismatch(object, 'Md5Cred', '(the rendered credential)', '(a different credential)');
      } else if (key === 'auth_type') {
        // 20.12+ reports the md5/userpass spellings as "digest".
        if (!(actual === value || (value === 'md5' && actual === 'digest'))) this.mismatch(object, 'AuthType', value, actual);
      } else if (!sameValue(value, actual)) {
        this.mismatch(object, headerName(key), value, actual);
      }
    }
    if (allow.length > 0) {
      const expectedAllow = `(${allow.join('|')})`;
      const actual = header(live, 'Allow');
      if (actual !== expectedAllow) this.mismatch(object, 'Allow', expectedAllow, actual);
    }
  }

  async verifyPjsip(change: ModuleChange) {
    const diff = change.pjsip ?? comparePjsip(change.before, change.after);

    const fetched = new Map<string, EndpointDetails | null>();
    const liveNames = await liveEndpointNames(this.asterisk, [...diff.added, ...diff.changed, ...diff.removed], this.checked, fetched);
    for (const name of [...diff.added, ...diff.changed]) {
      if (!liveNames.has(name)) this.mismatch(`endpoint ${name}`, 'presence', 'present', 'missing');
    }
    for (const name of diff.removed) {
      if (!liveNames.has(name) || this.options.foreign?.has(name)) continue;
      if (change.lockedOut?.numbers.has(name)) await this.verifyLockedOut(name, change.lockedOut.credential, fetched.get(name));
      else this.mismatch(`endpoint ${name}`, 'presence', 'removed', 'still present');
    }

    const detailed = [...diff.changed, ...diff.added.slice(0, this.options.detailLimit)].filter((n) => liveNames.has(n));
    for (const name of detailed) {
      let details = fetched.get(name);
      if (details === undefined) {
        details = await this.asterisk.showEndpoint(name);
        this.checked.endpointDetails++;
      }
      if (!details) {
        this.mismatch(`endpoint ${name}`, 'presence', 'present', 'missing');
        continue;
      }
      const endpoint = diff.object('endpoint', name);
      const auth = diff.object('auth', name);
      const aor = diff.object('aor', name);
      const named = (list: AmiHeaders[]) => list.find((h) => header(h, 'ObjectName') === name);
      if (endpoint) this.compareObject(`endpoint ${name}`, endpoint, details.endpoint);
      if (auth) this.compareObject(`auth ${name}`, auth, named(details.auths));
      if (aor) this.compareObject(`aor ${name}`, aor, named(details.aors));
    }

    for (const transport of diff.transports()) {
      await this.verifyTransport(transport);
    }
  }

  /** A removed extension still listed until the fold: its auth must take no password any more. */
  async verifyLockedOut(name: string, credential: string, known: EndpointDetails | null | undefined) {
    let details = known;
    if (details === undefined) {
      details = await this.asterisk.showEndpoint(name);
      this.checked.endpointDetails++;
    }
    const auth = details?.auths.find((h) => header(h, 'ObjectName') === name);
    if (header(auth ?? {}, 'Md5Cred') !== this.asterisk.secretFingerprint(credential)) {
      this.mismatch(`auth ${name}`, 'Md5Cred', '(locked out until the fold)', auth ? '(the old credential)' : 'missing');
    }
  }

  async verifyTransport(transport: PjsipObject) {
    const object = `transport ${transport.name}`;
    const { ok, lines } = await this.command(`pjsip show transport ${transport.name}`);
    if (!ok) return this.mismatch(object, 'presence', 'present', lines.join(' ').trim() || 'missing');
    const live = new Map<string, string[]>();
    for (const line of lines) {
      const m = /^\s*([a-z0-9_]+)\s*:\s?(.*)$/.exec(line);
      if (m) live.set(m[1]!, [...(live.get(m[1]!) ?? []), m[2]!.trim()]);
    }
    const expected = new Map<string, string[]>();
    for (const [key, value] of optionsOf(transport)) expected.set(key, [...(expected.get(key) ?? []), value]);
    for (const [key, values] of expected) {
      // pjsip show transport prints local_net as address/netmask.
      const want = (key === 'local_net' ? values.map(cidrToNetmask) : values).slice().sort();
      const got = (live.get(key) ?? []).slice().sort();
      if (want.join(',') === got.join(',')) continue;
      if (key === 'local_net' || key.startsWith('external_')) {
        this.mismatch(object, key, want.join(', '), got.join(', ') || undefined);
      } else {
        // bind, protocol, TLS files: res_pjsip keeps the old value until Asterisk restarts.
        this.restartPending.push(`${object} ${key} is ${got.join(', ') || '(unset)'}, rendered ${want.join(', ')}`);
      }
    }
  }

  async verifyRtp(change: ModuleChange) {
    const want = (key: string) => new RegExp(`^${key}=(\\d+)$`, 'm').exec(change.after)?.[1];
    const { ok, lines } = await this.command('rtp show settings');
    if (!ok) return this.mismatch('rtp.conf', 'rtp show settings', 'output', lines.join(' '));
    const text = lines.join('\n');
    const start = /Port start:\s+(\d+)/.exec(text)?.[1];
    const end = /Port end:\s+(\d+)/.exec(text)?.[1];
    if (start !== want('rtpstart')) this.mismatch('rtp.conf', 'rtpstart', want('rtpstart') ?? '?', start);
    if (end !== want('rtpend')) this.mismatch('rtp.conf', 'rtpend', want('rtpend') ?? '?', end);
  }

  async verifyDialplan(change: ModuleChange) {
    // The dial-by-number context: each added or changed extension read back entry by entry (all
    // of them when they were edited live, which is a bounded number; a sample after a reload),
    // and each removed one must be gone.
    const diff = change.dialplan ?? compareDialplan(change.before, change.after);
    const limit = diff.edits ? Infinity : this.options.detailLimit;
    for (const number of [...diff.changed, ...diff.added].slice(0, limit)) {
      const at = `${number}@${EXTENSIONS_CONTEXT}`;
      const { ok, lines } = await this.command(`dialplan show ${at}`);
      if (!ok) {
        this.mismatch(`dialplan ${at}`, 'presence', 'present', 'missing');
        continue;
      }
      // Entries with labels are not compared one by one (the feature codes): present is enough.
      const expected = diff.expected.get(number);
      if (!expected) continue;
      const live = extensionEntries(lines, number);
      const field = (p: number | 'hint') => (p === 'hint' ? 'hint' : `priority ${p}`);
      for (const want of expected) {
        const got = live.get(want.priority);
        const text = entryText(want);
        if (got !== text) this.mismatch(`dialplan ${at}`, field(want.priority), text, got);
      }
      const extra = [...live.keys()].filter((p) => !expected.some((w) => w.priority === p));
      for (const p of extra) this.mismatch(`dialplan ${at}`, field(p), '(none)', live.get(p));
    }
    // Numbers of the other contexts (each conference room has its own).
    const before = dialplanNumbers(change.before);
    const after = dialplanNumbers(change.after);
    const added = [...after].filter((n) => !before.has(n)).slice(0, this.options.detailLimit);
    const removed = [...before].filter((n) => !after.has(n)).slice(0, this.options.detailLimit);
    for (const at of added) {
      const { ok } = await this.command(`dialplan show ${at}`);
      if (!ok) this.mismatch(`dialplan ${at}`, 'presence', 'present', 'missing');
    }
    for (const at of [...diff.removed.slice(0, limit).map((n) => `${n}@${EXTENSIONS_CONTEXT}`), ...removed]) {
      const { ok } = await this.command(`dialplan show ${at}`);
      if (ok) this.mismatch(`dialplan ${at}`, 'presence', 'removed', 'still present');
    }
    // The operator-facing contexts are few and small: check each exists and includes the agent's
    // contexts it should (the extensions, and the conference rooms it may dial).
    for (const [ctx, includes] of operatorContexts(change.after)) {
      const { ok, lines } = await this.command(`dialplan show ${ctx}`);
      for (const inc of includes) {
        if (!ok || !lines.some((l) => l.includes(`'${inc}'`))) {
          this.mismatch(`dialplan context ${ctx}`, 'include', inc, ok ? 'not included' : 'context missing');
        }
      }
    }
  }

  /**
   * Conference profiles read back one by one (`confbridge show profile bridge|user NAME`): those
   * added or changed must show what was rendered, those removed must be gone. app_confbridge
   * refuses a whole file it cannot take (the Reload then answers an error), but a file cut short
   * by a syntax error loads only its first sections and answers success: only reading back tells.
   */
  async verifyConfbridge(change: ModuleChange) {
    const key = (o: PjsipObject) => `${o.type} ${o.name}`;
    const before = new Map(parsePjsipObjects(change.before).map((o) => [key(o), o]));
    const after = parsePjsipObjects(change.after).filter((o) => o.type === 'bridge' || o.type === 'user');
    for (const profile of after) {
      const old = before.get(key(profile));
      if (old && old.options.join('\n') === profile.options.join('\n')) continue;
      await this.compareProfile(profile);
    }
    const kept = new Set(after.map(key));
    for (const [k, old] of before) {
      if (kept.has(k) || (old.type !== 'bridge' && old.type !== 'user')) continue;
      const { lines } = await this.command(`confbridge show profile ${old.type} ${old.name}`);
      if (!isMissingProfile(lines)) this.mismatch(`confbridge ${old.type} profile ${old.name}`, 'presence', 'removed', 'still present');
    }
  }

  private async compareProfile(profile: PjsipObject) {
    const object = `confbridge ${profile.type} profile ${profile.name}`;
    const { ok, lines } = await this.command(`confbridge show profile ${profile.type} ${profile.name}`);
    if (!ok || isMissingProfile(lines)) return this.mismatch(object, 'presence', 'present', 'missing');
    const live = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(':');
      if (colon > 0) live.set(line.slice(0, colon), line.slice(colon + 1).trim());
    }
    const fields = profile.type === 'bridge' ? BRIDGE_FIELDS : USER_FIELDS;
    const options = new Map(optionsOf(profile));
    // A profile without a PIN shows "None": a PIN removed must be gone live too.
    if (profile.type === 'user' && !options.has('pin')) options.set('pin', '');
    for (const [option, value] of options) {
      const field = fields[option];
      if (!field) continue;
      const actual = live.get(field.label);
      if (option === 'pin') {
        const expected = value === '' ? 'None' : this.asterisk.secretFingerprint(value);
        if (actual !== expected) {
          this.mismatch(object, field.label, value === '' ? 'None' : '(the rendered PIN)', actual === undefined ? undefined : actual === 'None' ? 'None' : '(a different PIN)');
        }
      } else if (!field.same(value, actual)) {
        this.mismatch(object, field.label, field.shown(value), actual);
      }
    }
  }

  async verifyVoicemail(change: ModuleChange) {
    const want = new Set([...change.after.matchAll(/^([0-9]+) => /gm)].map((m) => m[1]!));
    const { lines } = await this.command(`voicemail show users for ${VOICEMAIL_CONTEXT}`);
    const live = new Set<string>();
    for (const line of lines) {
      const m = /^(\S+)\s+(\d+)\s/.exec(line);
      if (m && m[1] === VOICEMAIL_CONTEXT) live.add(m[2]!);
    }
    for (const box of want) if (!live.has(box)) this.mismatch(`voicemail ${box}@${VOICEMAIL_CONTEXT}`, 'presence', 'present', 'missing');
    for (const box of live) if (!want.has(box)) this.mismatch(`voicemail ${box}@${VOICEMAIL_CONTEXT}`, 'presence', 'removed', 'still present');
  }
}

/**
 * Up to this many names are looked up one by one (PJSIPShowEndpoint); beyond it one
 * PJSIPShowEndpoints list is cheaper. A one-extension change on a 10,000-endpoint PBX then costs
 * one small answer instead of 10,000 list events.
 */
const LOOKUP_ONE_BY_ONE = 64;

/** Which of `names` Asterisk has live. */
export async function liveEndpointNames(
  asterisk: AsteriskControl,
  names: readonly string[],
  counters?: VerifyResult['checked'],
  /** Filled with the details read on the way, so that they are not read twice. */
  fetched?: Map<string, EndpointDetails | null>,
): Promise<Set<string>> {
  if (names.length === 0) return new Set();
  if (names.length > LOOKUP_ONE_BY_ONE) {
    const live = await asterisk.showEndpoints();
    if (counters) counters.endpointsListed = live.length;
    const wanted = new Set(names);
    return new Set(live.map((e) => e.name).filter((n) => wanted.has(n)));
  }
  const found = new Set<string>();
  for (const name of names) {
    if (counters) counters.endpointDetails++;
    const details = await asterisk.showEndpoint(name);
    fetched?.set(name, details);
    if (details) found.add(name);
  }
  return found;
}

/**
 * `NUMBER@CONTEXT` for every extension's first priority in an extensions.conf body, outside the
 * dial-by-number context (verifyDialplan reads that one entry by entry).
 */
function dialplanNumbers(body: string): Set<string> {
  const out = new Set<string>();
  let context = '';
  for (const line of body.split('\n')) {
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) context = section[1]!;
    const exten = /^exten => ([0-9]+),1,/.exec(line);
    if (exten && context && context !== EXTENSIONS_CONTEXT) out.add(`${exten[1]}@${context}`);
  }
  return out;
}

/** How `dialplan show` prints an entry: `Gosub(args)`, `Hangup()`, or the hint's device. */
function entryText(entry: DialplanEntry): string {
  return entry.priority === 'hint' ? entry.application : `${entry.application}(${entry.data})`;
}

/**
 * The entries `dialplan show NUMBER@CONTEXT` prints for NUMBER (pbx.c show_dialplan_helper):
 *   `  '1001' =>         hint: PJSIP/1001                              [extensions.conf:30]`
 *   `                    1. Gosub(pbx-agent-dial,s,1(1001,30,)) [extensions.conf:28]`
 * (reference transcripts o_ and p_); lines of any other extension shown (a pattern) are skipped.
 */
export function extensionEntries(lines: readonly string[], number: string): Map<number | 'hint', string> {
  const out = new Map<number | 'hint', string>();
  let mine = false;
  for (const raw of lines) {
    const head = /^\s*'([^']*)' =>/.exec(raw);
    if (head) mine = head[1] === number;
    else if (!/^\s+\S/.test(raw)) mine = false; // a context's header, a blank line, the summary
    if (!mine) continue;
    const text = raw.replace(/^\s*'[^']*' =>/, '').replace(/\s+\[[^\]]*\]\s*$/, '').trim();
    const hint = /^hint: (.*)$/.exec(text);
    if (hint) out.set('hint', hint[1]!);
    const prio = /^(\d+)\.(?: \[[^\]]*\])? (.*)$/.exec(text);
    if (prio) out.set(Number(prio[1]), prio[2]!);
  }
  return out;
}

/** The contexts operators' phones use (those that include the agent's extensions), with the agent's contexts each includes. */
function operatorContexts(body: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const section of body.split(/\n(?=\[)/)) {
    const m = /^\[([^\]]+)\]\ninclude => (\S+)$/m.exec(section);
    if (!m || m[2] !== EXTENSIONS_CONTEXT || !section.startsWith(`[${m[1]}]`)) continue;
    out.set(m[1]!, [...section.matchAll(/^include => (pbx-agent-\S+)$/gm)].map((x) => x[1]!));
  }
  return out;
}

/** conf_config_parser.c answers an unknown profile with success and this line. */
function isMissingProfile(lines: readonly string[]): boolean {
  return lines.some((l) => /^No conference (bridge|user) profile named '.*' found!$/.test(l.trim()));
}

interface ProfileField {
  /** The label `confbridge show profile ...` prints before the colon. */
  label: string;
  same(rendered: string, live: string | undefined): boolean;
  /** The rendered value as Asterisk would print it, for the mismatch message. */
  shown(rendered: string): string;
}

/** yes/no rendered; true/false or enabled/disabled printed, depending on the option. */
const flag = (label: string, on: string, off: string): ProfileField => ({
  label,
  same: (rendered, live) => live === (TRUE.test(rendered) ? on : off),
  shown: (rendered) => (TRUE.test(rendered) ? on : off),
});
const printed = (label: string, show: (rendered: string) => string): ProfileField => ({
  label,
  same: (rendered, live) => live === show(rendered),
  shown: show,
});

/** handle_cli_confbridge_show_bridge_profile (conf_config_parser.c, the same in 20.6 and 22). */
const BRIDGE_FIELDS: Record<string, ProfileField> = {
  max_members: printed('Max Members', (v) => (Number(v) === 0 ? 'No Limit' : String(Number(v)))),
  video_mode: printed('Video Mode', (v) => (v === 'none' ? 'no video' : v)),
  maximum_sample_rate: printed('Maximum Sample Rate', (v) => (v === 'none' || Number(v) === 0 ? 'none' : String(Number(v)))),
};

/** handle_cli_confbridge_show_user_profile. */
const USER_FIELDS: Record<string, ProfileField> = {
  admin: flag('Admin', 'true', 'false'),
  marked: flag('Marked User', 'true', 'false'),
  startmuted: flag('Start Muted', 'true', 'false'),
  music_on_hold_when_empty: flag('MOH When Empty', 'enabled', 'disabled'),
  quiet: flag('Quiet', 'enabled', 'disabled'),
  announce_user_count: flag('Announce User Count', 'enabled', 'disabled'),
  announce_join_leave: flag('Announce join/leave', 'enabled', 'disabled'),
  wait_marked: flag('Wait Marked', 'enabled', 'disabled'),
  end_marked: flag('END Marked (All)', 'enabled', 'disabled'),
  pin: printed('PIN', (v) => v),
};

/** "172.31.0.0/16" → "172.31.0.0/255.255.0.0" */
function cidrToNetmask(cidr: string): string {
  const [addr, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return `${addr}/${[24, 16, 8, 0].map((s) => (mask >>> s) & 255).join('.')}`;
}

export async function verifyLiveState(
  asterisk: AsteriskControl,
  changes: readonly ModuleChange[],
  options: VerifyOptions,
): Promise<VerifyResult> {
  const checker = new Checker(asterisk, options);
  for (const change of changes) {
    if (change.module === 'res_pjsip') await checker.verifyPjsip(change);
    else if (change.module === 'res_rtp_asterisk') await checker.verifyRtp(change);
    else if (change.module === 'pbx_config') await checker.verifyDialplan(change);
    else if (change.module === 'app_voicemail') await checker.verifyVoicemail(change);
    else if (change.module === 'app_confbridge') await checker.verifyConfbridge(change);
  }
  return {
    ok: checker.mismatches.length === 0,
    mismatches: checker.mismatches,
    restartPending: checker.restartPending,
    checked: checker.checked,
  };
}

/** One line for logs: the first few mismatches. */
export function describeMismatches(mismatches: readonly Mismatch[], max = 5): string {
  const shown = mismatches.slice(0, max).map((m) => `${m.object} ${m.field}: expected ${m.expected}, Asterisk has ${m.actual}`);
  return shown.join('; ') + (mismatches.length > max ? `; and ${mismatches.length - max} more` : '');
}
