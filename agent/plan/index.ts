/**
 * plan: compare the rendered files with what is on disk and decide what to write and which
 * Asterisk modules to reload. Pure. Nothing changed → nothing written, nothing reloaded.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { RenderedFile } from '../render/index.js';
import { inReloadOrder, splitManagedText, type AsteriskModule } from '../managed-files.js';
import { unifiedDiff } from './diff.js';
import { planWarnings, type PlanWarning } from './hazards.js';
import { compareDialplan, type DialplanComparison } from './dialplan.js';
import { comparePjsip, type PjsipComparison } from './objects.js';
import { compareRooms, type RoomChanges } from './rooms.js';

export { checkRemovals, ACKNOWLEDGE_HINT, MASS_REMOVAL_FLAG, MASS_REMOVAL_TRAILER, type RemovalRefusal } from './guard.js';
export type { PlanWarning } from './hazards.js';
export type { DialplanComparison, DialplanEdit } from './dialplan.js';

export type FileAction = 'create' | 'update' | 'unchanged';

export interface FileChange {
  path: string;
  module: AsteriskModule;
  action: FileAction;
  /** The rendered file (to be written when action is not 'unchanged'). */
  rendered: RenderedFile;
}

export interface ReloadPlan {
  files: FileChange[];
  /** Modules to reload, in a fixed order: transports and endpoints first, dialplan after. */
  reloads: AsteriskModule[];
  /** Extensions added, changed and removed in pjsip.conf. */
  extensions: { added: string[]; changed: string[]; removed: string[] };
  /** Conference rooms added, changed and removed (confbridge.conf and the rooms' dialplan). */
  conferences: RoomChanges;
  /** Why a reload is not enough and Asterisk must restart for the change to take; empty if it is. */
  restartReasons: string[];
  /** Extensions kept whose credential can no longer match (a realm change with md5 unchanged). */
  lockedOut: string[];
  /** How many extensions the managed pjsip.conf has now (0 when it does not change). */
  extensionsBefore: number;
  /** What the change would do to the phones beyond its diff (plan/hazards.ts). */
  warnings: PlanWarning[];
  /** The pjsip.conf comparison behind `extensions`, kept for verification (absent when unchanged). */
  pjsip?: PjsipComparison;
  /**
   * The extensions.conf comparison (absent when it does not change): with `edits`, the dialplan
   * changes live, entry by entry, instead of pbx_config reloading the whole file.
   */
  dialplan?: DialplanComparison;
  changed: boolean;
}



/**
 * `onDisk` maps each managed path to its current text, or undefined when the file is missing.
 * A file whose body is unchanged is left alone even if its header names an older revision:
 * rewriting it would change its size and mtime and make Asterisk re-read it for nothing.
 */
export function planChanges(rendered: readonly RenderedFile[], onDisk: ReadonlyMap<string, string | undefined>): ReloadPlan {
  const files: FileChange[] = rendered.map((file) => {
    const current = onDisk.get(file.path);
    let action: FileAction;
    if (current === undefined) action = 'create';
    else action = splitManagedText(current).body === file.body ? 'unchanged' : 'update';
    return { path: file.path, module: file.module, action, rendered: file };
  });
  const modules = new Set(files.filter((f) => f.action !== 'unchanged').map((f) => f.module));
  const reloads = inReloadOrder(modules);

  const rtpFile = files.find((f) => f.module === 'res_rtp_asterisk');
  const rtpBefore = rtpFile && onDisk.get(rtpFile.path);
  const rtp = { before: rtpBefore === undefined ? undefined : splitManagedText(rtpBefore).body, after: rtpFile?.rendered.body ?? '' };
  const dialplanFile = files.find((f) => f.module === 'pbx_config' && f.action !== 'unchanged');
  const dialplan = dialplanFile && compareDialplan(splitManagedText(onDisk.get(dialplanFile.path) ?? '').body, dialplanFile.rendered.body);
  const conferences = conferenceChanges(files, onDisk, dialplan);
  const pjsipFile = files.find((f) => f.module === 'res_pjsip' && f.action !== 'unchanged');
  if (!pjsipFile) {
    return {
      files,
      reloads,
      extensions: { added: [], changed: [], removed: [] },
      conferences,
      lockedOut: [],
      extensionsBefore: 0,
      restartReasons: [],
      warnings: planWarnings(undefined, rtp),
      ...(dialplan ? { dialplan } : {}),
      changed: reloads.length > 0,
    };
  }
  const pjsip = comparePjsip(splitManagedText(onDisk.get(pjsipFile.path) ?? '').body, pjsipFile.rendered.body);
  const { added, changed, removed, restartReasons, lockedOut, extensionsBefore } = pjsip;
  return {
    files,
    reloads,
    extensions: { added, changed, removed },
    conferences,
    lockedOut,
    extensionsBefore,
    restartReasons,
    warnings: planWarnings(pjsip, rtp),
    pjsip,
    ...(dialplan ? { dialplan } : {}),
    changed: reloads.length > 0,
  };
}

/** Rooms the change adds, changes or removes; nothing is compared when neither file changes. */
function conferenceChanges(files: readonly FileChange[], onDisk: ReadonlyMap<string, string | undefined>, dialplan: DialplanComparison | undefined): RoomChanges {
  const confbridge = files.find((f) => f.module === 'app_confbridge');
  const extensions = files.find((f) => f.module === 'pbx_config');
  const none = { added: [], changed: [], removed: [] };
  if (!confbridge || !extensions || (confbridge.action === 'unchanged' && extensions.action === 'unchanged')) return none;
  // Extensions added or removed touch no room: nothing to compare in 250,000 lines.
  if (confbridge.action === 'unchanged' && dialplan?.onlyExtensions) return none;
  const body = (f: FileChange) => splitManagedText(onDisk.get(f.path) ?? '').body;
  return compareRooms(
    { confbridge: body(confbridge), extensions: body(extensions) },
    { confbridge: confbridge.rendered.body, extensions: extensions.rendered.body },
  );
}

/**
 * Keys the fingerprints of this process. A PIN has 4 to 12 digits: a plain hash of one is undone
 * by hashing every possible PIN, so the fingerprint is an HMAC whose key never leaves memory.
 */
const FINGERPRINT_KEY = randomBytes(32);

/** A short fingerprint of a secret: a changed secret still shows as a changed line, its value never does. */
function fingerprint(value: string): string {
  return `<redacted ${createHmac('sha256', FINGERPRINT_KEY).update(value).digest('hex').slice(0, 8)}>`;
}

/**
 * Credentials are hashes, but still never shown in a diff that may end up in a log; voicemail
 * and conference PINs are credentials too. `file` names the managed file the text comes from: in voicemail.conf
 * every `box => PIN,name,email` line starts with the PIN (voicemail.conf.sample), and Asterisk
 * also reads `box = PIN,...` (main/config.c takes `=>` and `=` alike), as a hand edit may write it.
 */
export function redactSecrets(text: string, file = ''): string {
  const credentials = text.replace(/^(\s*(?:md5_cred|password)\s*=)(.*)$/gm, (_m, key: string, value: string) => `${key}${fingerprint(value)}`);
  // Conference PINs: `pin=` of confbridge.conf's user profiles (`=>` is read as `=` there too).
  if (file.endsWith('confbridge.conf')) return credentials.replace(/^(\s*pin\s*=>?)(.*)$/gim, (_m, key: string, value: string) => `${key}${fingerprint(value)}`);
  if (!file.endsWith('voicemail.conf')) return credentials;
  return credentials.replace(/^(\s*[^;[\s=][^=\n]*?\s*=>?\s*)([^,\n]*)/gm, (_m, key: string, pin: string) => `${key}${fingerprint(pin)}`);
}

/** Lines in a header: what a diff of the body adds to its line numbers. */
function lineCount(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * A unified diff of the body for people, with credentials redacted. Headers (revision lines) are
 * not compared, but the hunk line numbers are the lines of the files themselves.
 */
export function fileDiff(change: FileChange, current: string | undefined, maxLines = 200): string {
  if (change.action === 'unchanged') return '';
  const old = current === undefined ? undefined : splitManagedText(current);
  const before = old === undefined ? '' : redactSecrets(old.body, change.path);
  const after = redactSecrets(change.rendered.body, change.path);
  const newHeader = change.rendered.text.slice(0, change.rendered.text.length - change.rendered.body.length);
  return unifiedDiff(old === undefined ? '/dev/null' : `a/${change.path}`, `b/${change.path}`, before, after, {
    context: 2,
    maxLines,
    fromLineOffset: old === undefined ? 0 : lineCount(old.header),
    toLineOffset: lineCount(newHeader),
  });
}
