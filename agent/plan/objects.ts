/**
 * Object-level changes in pjsip.conf: which extensions are added, changed or removed, and whether
 * a transport changed in a way res_pjsip cannot apply on reload.
 *
 * Works on the text of the managed file (ours, so its shape is known) rather than on a remembered
 * state: what is on disk is what Asterisk loaded last. pjsip.conf for 10,000 extensions is
 * 250,000 lines, so sections are compared as whole strings and split into options only when an
 * object is looked at.
 */

import { commonEnds } from './common-ends.js';

export interface PjsipObject {
  name: string;
  type: string;
  /** `key=value` lines in order, without `type=`. */
  options: string[];
}

export interface ObjectChanges {
  /** Extension numbers (endpoint/auth/aor sets), sorted. */
  added: string[];
  changed: string[];
  removed: string[];
  /** Transports whose change needs an Asterisk restart, with the reason. */
  restartReasons: string[];
}

/** The object changes together with the objects of `after` (and of `before`, for what a change loses). */
export interface PjsipComparison extends ObjectChanges {
  /** How many extensions `before` has: what a removal is measured against. */
  extensionsBefore: number;
  /** Changed extensions whose credential can no longer match (see lockedOut below). */
  lockedOut: string[];
  /** An object of `after`, parsed on demand. */
  object(type: string, name: string): PjsipObject | undefined;
  /** An object of `before`, parsed on demand. */
  objectBefore(type: string, name: string): PjsipObject | undefined;
  /** Every transport of `after`. */
  transports(): PjsipObject[];
  /** Every transport of `before`. */
  transportsBefore(): PjsipObject[];
}

/** The value of `key=` in an object, or undefined. */
export function optionOf(o: PjsipObject | undefined, key: string): string | undefined {
  const line = o?.options.find((l) => l.startsWith(`${key}=`));
  return line?.slice(key.length + 1);
}

/**
 * An auth whose realm changed while its md5_cred did not: md5_cred is md5("user:realm:password")
 * (res_pjsip auth, DESIGN.md), so a digest made for the old realm matches no password under the
 * new one and the phone is refused with 401. A secret or plain password is hashed again with the
 * new realm and changes with it; an `md5:` line written in the YAML does not.
 */
function lockedOut(before: PjsipObject | undefined, after: PjsipObject | undefined): boolean {
  if (!before || !after) return false;
  const realm = (o: PjsipObject) => optionOf(o, 'realm') ?? 'asterisk';
  return realm(before) !== realm(after) && optionOf(before, 'md5_cred') !== undefined && optionOf(before, 'md5_cred') === optionOf(after, 'md5_cred');
}

interface Section {
  name: string;
  type: string;
  /** The section's text from `[` up to the next section, without trailing blank lines. */
  text: string;
}

/** The section whose `[` is at `start`: up to the next section, without its options parsed. */
function sectionAt(body: string, start: number): Section {
  const next = body.indexOf('\n[', start);
  // Trailing blank lines depend on what follows the section, not on the section.
  const text = body.slice(start, next < 0 ? body.length : next + 1).trimEnd();
  const name = text.slice(1, text.indexOf(']'));
  const t = text.indexOf('\ntype=');
  const eol = t < 0 ? -1 : text.indexOf('\n', t + 6);
  const type = t < 0 ? '' : text.slice(t + 6, eol < 0 ? text.length : eol).trim();
  return { name, type, text };
}

/** Sections by type and name, without parsing their options. */
function indexSections(body: string): Map<string, Section> {
  const out = new Map<string, Section>();
  let start = body.startsWith('[') ? 0 : body.indexOf('\n[') + 1;
  while (start > 0 || body.startsWith('[', start)) {
    const section = sectionAt(body, start);
    out.set(objectKey(section.type, section.name), section);
    const next = body.indexOf('\n[', start);
    if (next < 0) break;
    start = next + 1;
  }
  return out;
}

function parseSection(section: Section): PjsipObject {
  const options: string[] = [];
  for (const line of section.text.split('\n').slice(1)) {
    if (line === '' || line.startsWith(';') || line.startsWith('type=')) continue;
    options.push(line);
  }
  return { name: section.name, type: section.type, options };
}

/** Parses `[name]` sections with `key=value` lines; comments and blank lines are skipped. */
export function parsePjsipObjects(body: string): PjsipObject[] {
  return [...indexSections(body).values()].map(parseSection);
}

export function objectKey(type: string, name: string): string {
  return `${type}\u0000${name}`;
}

/**
 * Options of a transport that res_pjsip applies on reload: local_net and external_* (since 16.18,
 * DESIGN.md). Anything else (protocol, bind, TLS files and method) keeps its old value until
 * Asterisk restarts: reference/asterisk-20 e_6_transport_bind_change.txt.
 */
const LIVE_TRANSPORT_OPTIONS = new Set(['local_net', 'external_media_address', 'external_signaling_address']);

export function diffPjsipObjects(before: string, after: string): ObjectChanges {
  const { added, changed, removed, restartReasons } = comparePjsip(before, after);
  return { added, changed, removed, restartReasons };
}

export function comparePjsip(before: string, after: string): PjsipComparison {
  // Only the sections between the texts' common start and common end can differ: a one-extension
  // change on 10,000 extensions indexes a few sections instead of 60,000 (~300 ms without the
  // optimizing compiler, as the unit runs). Sections that moved (a reordered hand edit) are the
  // exception: then every section is indexed.
  const region = differingSections(before, after);
  const narrow = compareSections(before, after, indexSections(before.slice(region.start, region.beforeEnd)), indexSections(after.slice(region.start, region.afterEnd)));
  return narrow ?? compareSections(before, after, indexSections(before), indexSections(after), false)!;
}

/** Objects added or removed that are looked for elsewhere one by one, at most (see compareSections). */
const MAX_LOOKS = 60;

/**
 * The part of two texts that differs, widened to whole sections: sections before `start` and
 * after `beforeEnd` / `afterEnd` are the same in both, byte for byte.
 */
function differingSections(before: string, after: string): { start: number; beforeEnd: number; afterEnd: number } {
  const { prefix, suffix } = commonEnds(before, after);
  // Back to the start of the section the first difference is in; on to the next section's start.
  const start = prefix === 0 ? 0 : before.lastIndexOf('\n[', prefix - 1) + 1;
  const next = before.indexOf('\n[', before.length - suffix);
  const keep = next < 0 ? 0 : before.length - (next + 1);
  return { start, beforeEnd: before.length - keep, afterEnd: after.length - keep };
}

/** Whether `body` has a `[name]` section of this type anywhere. */
function hasSection(body: string, type: string, name: string): boolean {
  return sectionsOfName(body, name).some((o) => o.type === type);
}

/** `[...]` sections whose `type=` is this one, parsed: transports are few and at the top. */
function sectionsOfType(body: string, type: string): PjsipObject[] {
  const out: PjsipObject[] = [];
  const marker = `\ntype=${type}\n`;
  for (let at = body.indexOf(marker); at >= 0; at = body.indexOf(marker, at + 1)) out.push(parseSection(sectionAt(body, body.lastIndexOf('\n[', at) + 1)));
  return out;
}

/** Endpoint sections in a body: how many extensions it has. */
function countEndpoints(body: string): number {
  let n = 0;
  for (let at = body.indexOf('\ntype=endpoint'); at >= 0; at = body.indexOf('\ntype=endpoint', at + 1)) n++;
  return n;
}

/**
 * The comparison, from the sections of `before` and `after` that may differ (`old`, `now`); the
 * rest of each text is the same in both. Undefined when a section is in one part only while the
 * other text has it elsewhere (it moved): the caller then compares every section.
 */
function compareSections(before: string, after: string, old: Map<string, Section>, now: Map<string, Section>, narrowed = true): PjsipComparison | undefined {
  if (narrowed) {
    // A section in one part only is looked for in the other whole text; each look scans it, so
    // past a handful, indexing everything is cheaper.
    const oneSided = [
      ...[...now.values()].filter((x) => !old.has(objectKey(x.type, x.name))).map((x) => ({ section: x, other: before })),
      ...[...old.values()].filter((x) => !now.has(objectKey(x.type, x.name))).map((x) => ({ section: x, other: after })),
    ];
    if (oneSided.length > MAX_LOOKS) return undefined;
    if (oneSided.some(({ section, other }) => hasSection(other, section.type, section.name))) return undefined;
  }

  const extensions = (m: Map<string, Section>) => new Set([...m.values()].filter((s) => s.type !== 'transport').map((s) => s.name));
  const oldExt = extensions(old);
  const newExt = extensions(now);
  const same = (k: string) => old.get(k)?.text === now.get(k)?.text;

  const added: string[] = [];
  const changed: string[] = [];
  const removed: string[] = [];
  for (const name of newExt) {
    if (!oldExt.has(name)) added.push(name);
    else if (!['endpoint', 'auth', 'aor'].every((t) => same(objectKey(t, name)))) changed.push(name);
  }
  for (const name of oldExt) if (!newExt.has(name)) removed.push(name);

  const restartReasons: string[] = [];
  const transportNames = new Set([...old.values(), ...now.values()].filter((s) => s.type === 'transport').map((s) => s.name));
  for (const name of [...transportNames].sort()) {
    const a = old.get(objectKey('transport', name));
    const b = now.get(objectKey('transport', name));
    if (!a) restartReasons.push(`transport ${name} is new`);
    else if (!b) restartReasons.push(`transport ${name} is removed`);
    else if (a.text !== b.text) {
      const fixed = (o: PjsipObject) => o.options.filter((l) => !LIVE_TRANSPORT_OPTIONS.has(l.split('=')[0]!));
      const [pa, pb] = [fixed(parseSection(a)), fixed(parseSection(b))];
      if (pa.join('\n') !== pb.join('\n')) {
        const diff = pb.filter((l) => !pa.includes(l));
        restartReasons.push(`transport ${name} changes ${diff.map((l) => l.split('=')[0]).join(', ') || 'options'}`);
      }
    }
  }

  const byNumber = (x: string, y: string) => Number(x) - Number(y) || (x < y ? -1 : x > y ? 1 : 0);
  // An object outside the differing part is the same in both texts: found by its header.
  const parsed = (m: Map<string, Section>, body: string, type: string, name: string) => {
    const section = m.get(objectKey(type, name));
    if (section) return parseSection(section);
    return sectionsOfName(body, name).find((o) => o.type === type);
  };
  return {
    added: added.sort(byNumber),
    changed: changed.sort(byNumber),
    removed: removed.sort(byNumber),
    restartReasons,
    extensionsBefore: countEndpoints(before),
    lockedOut: changed.filter((n) => !same(objectKey('auth', n)) && lockedOut(parsed(old, before, 'auth', n), parsed(now, after, 'auth', n))),
    object: (type, name) => parsed(now, after, type, name),
    objectBefore: (type, name) => parsed(old, before, type, name),
    transports: () => sectionsOfType(after, 'transport'),
    transportsBefore: () => sectionsOfType(before, 'transport'),
  };
}

/** Every `[name]` section of a body, parsed. */
function sectionsOfName(body: string, name: string): PjsipObject[] {
  const out: PjsipObject[] = [];
  const header = `[${name}]`;
  for (let at = body.indexOf(header); at >= 0; at = body.indexOf(header, at + 1)) {
    if (at === 0 || body[at - 1] === '\n') out.push(parseSection(sectionAt(body, at)));
  }
  return out;
}
