/**
 * res_rtp_asterisk (rtp.conf), pbx_config (extensions.conf) and app_voicemail (voicemail.conf)
 * for the fake Asterisk: just enough state to answer `rtp show settings`, `dialplan show` and
 * `voicemail show users` the way the real one does (formats from
 * m_endpoint_detail_aors_coresettings_rtp_getconfig_ping.txt and
 * n_transport_detail_dialplan_missing_endpoint_module_reloads.txt).
 */
import { AsteriskConfigParser } from './config-parser.js';
import type { ConfigCategory, FileStamp, LogFn } from './config-parser.js';

/** A module whose config file is parsed with Asterisk's parser; `unchangedSkips` mirrors CONFIG_FLAG_FILEUNCHANGED. */
abstract class FileModule {
  protected readonly parser: AsteriskConfigParser;
  protected cache: Map<string, FileStamp> | undefined;
  loads = 0;

  constructor(configDir: string, protected readonly log: LogFn, readonly file: string, private readonly unchangedSkips: boolean) {
    this.parser = new AsteriskConfigParser({ configDir, log });
  }

  start(): void {
    this.cache = undefined;
    this.reset();
    this.read(true);
  }

  reload(): void {
    this.read(false);
  }

  private read(initial: boolean): void {
    if (!initial && this.unchangedSkips && this.parser.unchanged(this.file, this.cache)) return;
    const result = this.parser.load(this.file);
    if (result.status !== 'missing') this.cache = result.stamps;
    this.loads++;
    if (result.status !== 'ok') return; // missing or invalid: the module keeps what it had
    this.apply(result.categories);
  }

  protected abstract reset(): void;
  protected abstract apply(categories: ConfigCategory[]): void;
}

// ---------------------------------------------------------------------------------------------

const DEFAULT_RTP_START = 5000;
const DEFAULT_RTP_END = 31000;

/** res_rtp_asterisk.c rtp_reload(). */
export class RtpModule extends FileModule {
  rtpStart = DEFAULT_RTP_START;
  rtpEnd = DEFAULT_RTP_END;

  constructor(configDir: string, log: LogFn) {
    super(configDir, log, 'rtp.conf', true);
  }

  protected reset(): void {
    this.rtpStart = DEFAULT_RTP_START;
    this.rtpEnd = DEFAULT_RTP_END;
  }

  protected apply(categories: ConfigCategory[]): void {
    this.reset();
    const general = categories.filter((c) => !c.template && c.name.toLowerCase() === 'general');
    const get = (name: string) => {
      for (const c of general) for (const v of c.vars) if (v.name.toLowerCase() === name) return v.value;
      return undefined;
    };
    const clamp = (n: number) => Math.min(65535, Math.max(1024, n));
    const s = get('rtpstart');
    if (s !== undefined) this.rtpStart = clamp(atoi(s));
    const e = get('rtpend');
    if (e !== undefined) this.rtpEnd = clamp(atoi(e));
    if (this.rtpStart >= this.rtpEnd) {
      this.log('WARNING', 'res_rtp_asterisk.c', 'Unreasonable values for RTP start/end port in rtp.conf');
      this.reset();
    }
    this.log('VERBOSE', 'res_rtp_asterisk.c', `RTP Allocating from port range ${this.rtpStart} -> ${this.rtpEnd}`);
  }

  /** `rtp show settings` (m_*.txt, action a5). */
  cliShowSettings(): string[] {
    return [
      '',
      '',
      'General Settings:',
      '----------------',
      `  Port start:      ${this.rtpStart}`,
      `  Port end:        ${this.rtpEnd}`,
      '  Checksums:       Yes',
      '  DTMF Timeout:    1200',
      '  Strict RTP:      Yes',
      '  Probation:       4 frames',
      '  Replay Protect:  Yes',
      '  ICE support:     Yes',
      '  STUN:            disabled',
      '   Address:        0.0.0.0:0',
    ];
  }
}

/** C atoi(): leading digits, 0 when none. */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------------------------------------

interface Priority {
  priority: number;
  label: string;
  app: string;
  data: string;
  file: string;
  line: number;
}
interface Extension {
  name: string;
  priorities: Priority[];
  /** `exten => N,hint,PJSIP/N`: the device, and where it came from. */
  hint?: { app: string; file: string; line: number };
}
interface Context {
  name: string;
  extensions: Extension[];
  includes: Array<{ name: string; file: string; line: number }>;
}

/** pbx_config: contexts from extensions.conf. Always re-reads (no unchanged-file shortcut). */
export class DialplanModule extends FileModule {
  contexts = new Map<string, Context>();

  constructor(configDir: string, log: LogFn) {
    super(configDir, log, 'extensions.conf', false);
  }

  protected reset(): void {
    this.contexts = new Map();
  }

  protected apply(categories: ConfigCategory[]): void {
    const contexts = new Map<string, Context>();
    for (const cat of categories) {
      if (cat.template) continue;
      const lname = cat.name.toLowerCase();
      if (lname === 'general' || lname === 'globals') continue;
      const ctx = contexts.get(cat.name) ?? { name: cat.name, extensions: [], includes: [] };
      contexts.set(cat.name, ctx);
      let last: { ext: Extension; prio: number } | null = null;
      for (const v of cat.vars) {
        const name = v.name.toLowerCase();
        if (name === 'include') {
          ctx.includes.push({ name: v.value, file: v.file, line: v.line });
          continue;
        }
        if (name !== 'exten' && name !== 'same') continue;
        let extName: string;
        let rest: string;
        if (name === 'exten') {
          const comma = v.value.indexOf(',');
          if (comma < 0) continue;
          extName = v.value.slice(0, comma).trim();
          rest = v.value.slice(comma + 1);
        } else {
          if (!last) {
            this.log('WARNING', 'pbx_config.c', `Can't use 'same' unless an extension is defined at line ${v.line} of ${v.file}`);
            continue;
          }
          extName = last.ext.name;
          rest = v.value;
        }
        const comma = rest.indexOf(',');
        const prioText = (comma < 0 ? rest : rest.slice(0, comma)).trim();
        const appText = comma < 0 ? '' : rest.slice(comma + 1).trim();
        const label = /\(([^)]*)\)$/.exec(prioText)?.[1] ?? '';
        const bare = prioText.replace(/\(.*\)$/, '');
        let ext = ctx.extensions.find((e) => e.name === extName);
        if (!ext) {
          ext = { name: extName, priorities: [] };
          ctx.extensions.push(ext);
        }
        let prio: number;
        if (bare === 'n') prio = (last && last.ext === ext ? last.prio : 0) + 1;
        else if (/^\d+$/.test(bare)) prio = Number(bare);
        else if (bare === 'hint') {
          ext.hint = { app: appText, file: v.file, line: v.line };
          continue;
        }
        else {
          this.log('WARNING', 'pbx_config.c', `Invalid priority/label '${prioText}' at line ${v.line}`);
          continue;
        }
        const paren = appText.indexOf('(');
        const app = paren < 0 ? appText.split(',')[0] ?? '' : appText.slice(0, paren);
        const data = paren < 0 ? appText.slice(app.length + 1) : appText.slice(paren + 1).replace(/\)$/, '');
        ext.priorities.push({ priority: prio, label, app, data, file: v.file, line: v.line });
        ext.priorities.sort((a, b) => a.priority - b.priority);
        last = { ext, prio };
      }
    }
    this.contexts = contexts;
  }

  /**
   * `dialplan show [CONTEXT]` (n_*.txt, action a3) and `dialplan show EXTEN@CONTEXT`. Returns
   * [success, lines]. The EXTEN@CONTEXT failure wording follows pbx.c handle_show_dialplan (not
   * recorded).
   */
  cliShow(arg?: string): [boolean, string[]] {
    const at = arg?.indexOf('@') ?? -1;
    const exten = arg && at >= 0 ? arg.slice(0, at) : undefined;
    const contextName = arg && at >= 0 ? arg.slice(at + 1) : arg;
    const wanted = contextName
      ? [...this.contexts.values()].filter((c) => c.name === contextName)
      : [...this.contexts.values()];
    if (contextName && wanted.length === 0) {
      return [false, [`There is no existence of '${contextName}' context`, `Command 'dialplan show ${arg}' failed.`]];
    }
    if (exten !== undefined) {
      const ctx = wanted[0]!;
      const found = ctx.extensions.filter((e) => e.name === exten);
      if (found.length === 0) {
        return [false, [`There is no existence of ${exten}@${contextName} extension`, `Command 'dialplan show ${arg}' failed.`]];
      }
      const out = [`[ Context '${ctx.name}' created by 'pbx_config' ]`];
      for (const ext of found) out.push(...extensionLines(ext));
      out.push('', `-= 1 extension (${entryCount(found[0]!)} priorities) in 1 context. =-`);
      return [true, out];
    }
    const out: string[] = [];
    let exts = 0;
    let prios = 0;
    for (const ctx of wanted) {
      out.push(`[ Context '${ctx.name}' created by 'pbx_config' ]`);
      // Literal extensions sort before patterns (ext_cmp).
      const sorted = [...ctx.extensions].sort((a, b) => {
        const pa = a.name.startsWith('_') ? 1 : 0;
        const pb = b.name.startsWith('_') ? 1 : 0;
        return pa - pb || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      });
      for (const ext of sorted) {
        exts++;
        prios += entryCount(ext);
        out.push(...extensionLines(ext));
      }
      for (const inc of ctx.includes) {
        out.push(`  Include =>        ${`'${inc.name}'`.padEnd(45)} [pbx_config]`);
      }
      out.push('');
    }
    const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
    out.push(`-= ${plural(exts, 'extension', 'extensions')} (${plural(prios, 'priority', 'priorities')}) in ${plural(wanted.length, 'context', 'contexts')}. =-`);
    return [true, out];
  }

  /**
   * DialplanExtensionAdd (pbx_config.c manager_dialplan_extension_add): the context is created
   * if missing; an existing priority is kept unless `replace` ('exists' then). Registrar pbx_config,
   * which `dialplan show` prints as `[pbx_config]` (transcript p_).
   */
  addEntry(contextName: string, name: string, priority: number | 'hint', app: string, data: string, replace: boolean): 'added' | 'exists' {
    let ctx = this.contexts.get(contextName);
    if (!ctx) this.contexts.set(contextName, (ctx = { name: contextName, extensions: [], includes: [] }));
    let ext = ctx.extensions.find((e) => e.name === name);
    if (!ext) ctx.extensions.push((ext = { name, priorities: [] }));
    if (priority === 'hint') {
      if (ext.hint && !replace) return 'exists';
      ext.hint = { app, file: 'pbx_config', line: 0 };
      return 'added';
    }
    const at = ext.priorities.findIndex((p) => p.priority === priority);
    if (at >= 0 && !replace) return 'exists';
    const entry = { priority, label: '', app, data, file: 'pbx_config', line: 0 };
    if (at >= 0) ext.priorities[at] = entry;
    else ext.priorities.push(entry);
    ext.priorities.sort((a, b) => a.priority - b.priority);
    return 'added';
  }

  /** DialplanExtensionRemove: the whole extension, or one priority; false when there was none. */
  removeEntry(contextName: string, name: string, priority?: number | 'hint'): boolean {
    const ctx = this.contexts.get(contextName);
    const ext = ctx?.extensions.find((e) => e.name === name);
    if (!ctx || !ext) return false;
    if (priority === undefined) {
      ctx.extensions = ctx.extensions.filter((e) => e !== ext);
      return true;
    }
    if (priority === 'hint') {
      if (!ext.hint) return false;
      delete ext.hint;
    } else {
      const before = ext.priorities.length;
      ext.priorities = ext.priorities.filter((p) => p.priority !== priority);
      if (ext.priorities.length === before) return false;
    }
    if (!ext.hint && ext.priorities.length === 0) ctx.extensions = ctx.extensions.filter((e) => e !== ext);
    return true;
  }
}

/** `dialplan show`'s lines for one extension: the hint first, then each priority (pbx.c print_ext). */
function extensionLines(ext: Extension): string[] {
  const where = (file: string, line: number) => (line > 0 ? `[${file}:${line}]` : `[${file}]`);
  const rows: Array<[string, string]> = [];
  if (ext.hint) rows.push([`hint: ${ext.hint.app}`, where(ext.hint.file, ext.hint.line)]);
  for (const p of ext.priorities) rows.push([`${p.priority}.${p.label ? ` [${p.label}]` : ''} ${p.app}(${p.data})`, where(p.file, p.line)]);
  return rows.map(([text, from], i) => `  ${(i === 0 ? `'${ext.name}' =>` : '').padEnd(17)} ${text.padEnd(45)} ${from}`);
}

/** Priorities as `dialplan show` counts them: the hint is one. */
function entryCount(ext: Extension): number {
  return ext.priorities.length + (ext.hint ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------

export interface Mailbox {
  context: string;
  mailbox: string;
  pin: string;
  fullname: string;
  email: string;
}

/** app_voicemail: `box => pin,name,email` lines per context. */
export class VoicemailModule extends FileModule {
  mailboxes: Mailbox[] = [];

  constructor(configDir: string, log: LogFn) {
    super(configDir, log, 'voicemail.conf', true);
  }

  protected reset(): void {
    this.mailboxes = [];
  }

  protected apply(categories: ConfigCategory[]): void {
    const boxes: Mailbox[] = [];
    for (const cat of categories) {
      if (cat.template) continue;
      const lname = cat.name.toLowerCase();
      if (lname === 'general' || lname === 'zonemessages') continue;
      for (const v of cat.vars) {
        const [pin = '', fullname = '', email = ''] = v.value.split(',').map((s) => s.trim());
        boxes.push({ context: cat.name, mailbox: v.name, pin, fullname, email });
      }
    }
    this.mailboxes = boxes;
  }

  /** `voicemail show users [for CONTEXT]` (app_voicemail.c layout; not in the recorded transcripts). */
  cliShowUsers(context?: string): string[] {
    const boxes = this.mailboxes.filter((b) => !context || b.context === context);
    if (boxes.length === 0) return ['There are no voicemail users currently defined'];
    const row = (a: string, b: string, c: string, d: string, e: string) =>
      `${a.padEnd(10)} ${b.padEnd(5)} ${c.padEnd(25)} ${d.padEnd(10)} ${e.padStart(6)}`;
    return [row('Context', 'Mbox', 'User', 'Zone', 'NewMsg'), ...boxes.map((b) => row(b.context, b.mailbox, b.fullname, '', '0')),
      `${boxes.length} voicemail users configured.`];
  }
}
