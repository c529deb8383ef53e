/**
 * Asterisk's configuration-file parser (main/config.c), re-implemented for the fake Asterisk.
 *
 * Behaviour copied from Asterisk 20 and from what the real server logged in
 * /work/shared/reference/asterisk-20/transcripts (e_3_syntax_bracket.txt, e_3_syntax_noequals.txt):
 * - `[name]` starts a category; `[name](!)` is a template (invisible to modules and to GetConfig);
 *   `[x](a,b)` copies the variables of earlier categories a and b first; `[x](+)` appends to an
 *   existing category. A header without `]` (or `(` without `)`), inheritance from a category that
 *   does not exist, or a variable before any category rejects the WHOLE file.
 * - `;` starts a comment, `\;` is a literal `;`, `;--` ... `--;` is a (nestable) block comment.
 * - `key=value` and `key => value` (an "object" variable); a line without `=` is logged as a
 *   WARNING and ignored; `key += value` appends to the previous value of key.
 * - `#include` of a missing file (or a glob that matches nothing) rejects the including file;
 *   `#tryinclude` does not. A parse error inside an included file drops that file from the bad
 *   line on, and the including file still loads. Relative include paths are relative to the config directory, not to
 *   the including file. Included files continue the includer's current category.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

export type LogLevel = 'ERROR' | 'WARNING' | 'NOTICE' | 'VERBOSE';
export type LogFn = (level: LogLevel, source: string, message: string) => void;

export interface ConfigVariable {
  name: string;
  value: string;
  /** 1-based line number in `file`. */
  line: number;
  /** Path relative to the config directory (absolute if outside it). */
  file: string;
  /** Written as `name => value`. */
  object: boolean;
  /** Copied from a template by `[x](tpl)`. */
  inherited: boolean;
}

export interface ConfigCategory {
  name: string;
  template: boolean;
  /** Templates this category inherits from, in order. */
  templates: string[];
  vars: ConfigVariable[];
  line: number;
  file: string;
}

/** What Asterisk's file cache remembers of a file: size, mtime with nanoseconds, and its includes. */
export interface FileStamp {
  size: bigint;
  mtimeNs: bigint;
  includes: string[];
}

export type ConfigLoadResult =
  | { status: 'ok'; categories: ConfigCategory[]; stamps: Map<string, FileStamp> }
  | { status: 'missing'; stamps: Map<string, FileStamp> }
  | { status: 'invalid'; stamps: Map<string, FileStamp> };

export interface ConfigParserOptions {
  /** The directory standing in for /etc/asterisk. */
  configDir: string;
  /** How paths appear in log lines; the transcripts show /etc/asterisk/... */
  displayDir?: string;
  log: LogFn;
}

/** config.c MAX_INCLUDE_LEVEL */
const MAX_INCLUDE_LEVEL = 10;

interface ParseState {
  categories: ConfigCategory[];
  stamps: Map<string, FileStamp>;
  /** cfg->current in config.c: the last category appended, where an included file starts. */
  current: ConfigCategory | null;
  depth: number;
}

export class AsteriskConfigParser {
  readonly configDir: string;
  private readonly displayDir: string;
  private readonly log: LogFn;

  constructor(options: ConfigParserOptions) {
    this.configDir = path.resolve(options.configDir);
    this.displayDir = options.displayDir ?? '/etc/asterisk';
    this.log = options.log;
  }

  /** Absolute path of a config file name as Asterisk resolves it (relative to the config dir). */
  resolve(file: string): string {
    return path.isAbsolute(file) ? file : path.join(this.configDir, file);
  }

  /** The path as it appears in Asterisk's log lines. */
  display(absPath: string): string {
    const rel = this.relative(absPath);
    return rel === absPath ? absPath : `${this.displayDir}/${rel}`;
  }

  /** Memoized: it is asked once per line, and path.relative is costly at 250,000 lines. */
  private readonly relativeCache = new Map<string, string>();

  private relative(absPath: string): string {
    let rel = this.relativeCache.get(absPath);
    if (rel === undefined) {
      const r = path.relative(this.configDir, absPath);
      rel = !r.startsWith('..') && !path.isAbsolute(r) ? r : absPath;
      this.relativeCache.set(absPath, rel);
    }
    return rel;
  }

  /** Load a file and everything it includes, like ast_config_load2(). */
  load(file: string): ConfigLoadResult {
    const state: ParseState = { categories: [], stamps: new Map(), current: null, depth: 0 };
    const abs = this.resolve(file);
    const r = this.loadInto(abs, state, true);
    if (r === 'missing') return { status: 'missing', stamps: state.stamps };
    if (r === 'invalid') return { status: 'invalid', stamps: state.stamps };
    return { status: 'ok', categories: state.categories, stamps: state.stamps };
  }

  /**
   * CONFIG_FLAG_FILEUNCHANGED: Asterisk skips a reload when the main file and every file it
   * included (globs re-expanded, so a new file in an included directory counts) have the same
   * size and modification time (seconds and nanoseconds) as when they were last read.
   */
  unchanged(file: string, previous: Map<string, FileStamp> | undefined): boolean {
    if (!previous) return false;
    const seen = new Set<string>();
    const check = (abs: string): boolean => {
      if (seen.has(abs)) return true;
      seen.add(abs);
      const before = previous.get(abs);
      const now = statStamp(abs);
      if (!before || !now) return false;
      if (before.size !== now.size || before.mtimeNs !== now.mtimeNs) return false;
      for (const pattern of before.includes) {
        const matches = this.expand(pattern);
        for (const m of matches) if (!check(m)) return false;
      }
      return true;
    };
    return check(this.resolve(file));
  }

  /** Expand an include argument (glob allowed) to existing files, sorted like glob(3). */
  expand(pattern: string): string[] {
    const abs = this.resolve(pattern);
    if (!/[*?[{]/.test(abs)) return statStamp(abs) ? [abs] : [];
    return expandGlob(abs);
  }

  private loadInto(abs: string, state: ParseState, isMain: boolean): 'ok' | 'missing' | 'invalid' {
    let text: string;
    const stamp = statStamp(abs);
    try {
      text = readFileSync(abs, 'utf8');
    } catch {
      if (!isMain) this.log('VERBOSE', 'config.c', `Parsing '${this.display(abs)}': Not found (No such file or directory)`);
      return 'missing';
    }
    const includes: string[] = [];
    if (stamp) state.stamps.set(abs, { ...stamp, includes });

    // The including file keeps its own notion of "current category" (a local in
    // config_text_file_load) while an included file starts from cfg->current.
    let current: ConfigCategory | null = state.current;
    let commentDepth = 0;
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const lineno = i + 1;
      const stripped = stripComments(lines[i] ?? '', commentDepth);
      commentDepth = stripped.depth;
      const buffer = stripped.text.trim();
      if (!buffer) continue;
      const r = this.processLine(buffer, lineno, abs, state, current, includes);
      if (r === 'invalid') return 'invalid';
      current = r;
    }
    return 'ok';
  }

  /** process_text_line(): returns the current category afterwards, or 'invalid'. */
  private processLine(
    buffer: string,
    lineno: number,
    abs: string,
    state: ParseState,
    current: ConfigCategory | null,
    includes: string[],
  ): ConfigCategory | null | 'invalid' {
    const shown = this.display(abs);
    const rel = this.relative(abs);

    if (buffer.startsWith('[')) {
      const close = buffer.indexOf(']');
      if (close < 0) {
        this.log('WARNING', 'config.c', `parse error: no closing ']', line ${lineno} of ${shown}`);
        return 'invalid';
      }
      const name = buffer.slice(1, close);
      let cat: ConfigCategory | null = { name, template: false, templates: [], vars: [], line: lineno, file: rel };
      let target: ConfigCategory = cat;
      const rest = buffer.slice(close + 1);
      if (rest.startsWith('(')) {
        const closeParen = rest.indexOf(')');
        if (closeParen < 0) {
          this.log('WARNING', 'config.c', `parse error: no closing ')', line ${lineno} of ${shown}`);
          return 'invalid';
        }
        for (const option of rest.slice(1, closeParen).split(',')) {
          if (option === '!') {
            target.template = true;
          } else if (option === '+') {
            const existing = findCategory(state.categories, name);
            if (!existing) {
              this.log('WARNING', 'config.c',
                `Category addition requested, but category '${name}' does not exist, line ${lineno} of ${shown}`);
              return 'invalid';
            }
            if (cat) existing.vars.push(...cat.vars);
            cat = null;
            target = existing;
          } else {
            const base = findCategory(state.categories, option);
            if (!base) {
              this.log('WARNING', 'config.c',
                `Inheritance requested, but category '${option}' does not exist, line ${lineno} of ${shown}`);
              return 'invalid';
            }
            target.templates.push(option);
            for (const v of base.vars) target.vars.push({ ...v, inherited: true });
          }
        }
      }
      if (cat) state.categories.push(cat);
      state.current = target;
      return target;
    }

    if (buffer.startsWith('#')) {
      const m = /^#(\S*)\s*(.*)$/.exec(buffer);
      const directive = (m?.[1] ?? '').toLowerCase();
      let arg = (m?.[2] ?? '').trim();
      const isInclude = directive === 'include' || directive === 'tryinclude';
      const isExec = directive === 'exec' || directive === 'tryexec';
      if (!isInclude && !isExec) {
        this.log('WARNING', 'config.c', `Unknown directive '#${m?.[1] ?? ''}' at line ${lineno} of ${shown}`);
        return current;
      }
      if (!arg) {
        this.log('WARNING', 'config.c',
          `Directive '#${directive}' needs an argument (${isInclude ? 'filename' : '/path/to/executable'}) at line ${lineno} of ${shown}`);
        return current;
      }
      if (isExec) {
        this.log('WARNING', 'config.c',
          'Cannot perform #exec unless execincludes option is enabled in asterisk.conf (options section)!');
        return current;
      }
      // Strip one pair of "..." or <...> around the file name.
      const first = arg[0];
      const last = arg[arg.length - 1];
      if ((first === '"' && last === '"') || (first === '<' && last === '>')) arg = arg.slice(1, -1);
      includes.push(arg);
      if (state.depth >= MAX_INCLUDE_LEVEL) {
        this.log('WARNING', 'config.c', `Maximum Include level (${MAX_INCLUDE_LEVEL}) exceeded`);
        return directive === 'tryinclude' ? current : 'invalid';
      }
      const files = this.expand(arg);
      let loaded = 0;
      for (const f of files) {
        state.depth++;
        const saved = state.current;
        state.current = current ?? state.current;
        const r = this.loadInto(f, state, false);
        state.depth--;
        // A parse error inside an included file ends that file only: ast_config_internal_load
        // answers CONFIG_STATUS_FILEINVALID, which is not NULL, so process_text_line counts the
        // include as done and the includer goes on, keeping what the included file had defined
        // before the bad line (recorded: o_confbridge_profiles.txt, a missing ']' in the
        // #tryinclude'd pbx-agent/confbridge.conf).
        if (r === 'ok' || r === 'invalid') loaded++;
        if (r === 'missing') state.current = saved;
      }
      if (loaded === 0) {
        if (files.length === 0) {
          this.log('VERBOSE', 'config.c', `Parsing '${this.display(this.resolve(arg))}': Not found (No such file or directory)`);
        }
        if (directive === 'include') return 'invalid';
      }
      return current;
    }

    if (!current) {
      this.log('WARNING', 'config.c', `parse error: No category context for line ${lineno} of ${shown}`);
      return 'invalid';
    }
    const eq = buffer.indexOf('=');
    if (eq < 0) {
      this.log('WARNING', 'config.c', `No '=' (equal sign) in line ${lineno} of ${shown}`);
      return current;
    }
    let name = buffer.slice(0, eq);
    let value = buffer.slice(eq + 1);
    let object = false;
    let append = false;
    if (name.endsWith('+')) {
      append = true;
      name = name.slice(0, -1);
    }
    if (value.startsWith('>')) {
      object = true;
      value = value.slice(1);
    }
    name = name.trim();
    value = value.trim();
    if (append) {
      const prev = [...current.vars].reverse().find((v) => v.name === name);
      if (prev) {
        prev.value += value;
        return current;
      }
    }
    current.vars.push({ name, value, line: lineno, file: rel, object, inherited: false });
    return current;
  }
}

/** category_get(cfg, name, 1): the first category with that name, templates included. */
function findCategory(categories: ConfigCategory[], name: string): ConfigCategory | undefined {
  return categories.find((c) => c.name.toLowerCase() === name.toLowerCase());
}

/**
 * Comment handling of config_text_file_load(): `;` ends the line unless escaped as `\;`
 * (the backslash is removed); `;--` opens a block comment (nestable), `--;` closes it.
 */
export function stripComments(line: string, depthIn: number): { text: string; depth: number } {
  let depth = depthIn;
  let out = '';
  let segStart = depth === 0 ? 0 : -1;
  let i = 0;
  while (i < line.length) {
    if (line[i] !== ';') {
      i++;
      continue;
    }
    if (i > 0 && line[i - 1] === '\\') {
      if (segStart >= 0) {
        out += line.slice(segStart, i - 1) + ';';
        segStart = i + 1;
      }
      i++;
      continue;
    }
    if (line.startsWith(';--', i) && line[i + 3] !== '-') {
      if (segStart >= 0) out += line.slice(segStart, i);
      segStart = -1;
      depth++;
      i += 3;
      continue;
    }
    if (depth > 0 && i >= 2 && line[i - 1] === '-' && line[i - 2] === '-') {
      depth--;
      i++;
      if (depth === 0) segStart = i;
      continue;
    }
    if (depth === 0) {
      if (segStart >= 0) out += line.slice(segStart, i);
      return { text: out, depth };
    }
    i++;
  }
  if (segStart >= 0) out += line.slice(segStart);
  return { text: out, depth };
}

function statStamp(abs: string): { size: bigint; mtimeNs: bigint } | null {
  try {
    const st = statSync(abs, { bigint: true });
    if (!st.isFile()) return null;
    return { size: st.size, mtimeNs: st.mtimeNs };
  } catch {
    return null;
  }
}

/** A small glob(3) for absolute patterns: `*`, `?`, `[...]` and `{a,b}` per path segment. */
export function expandGlob(pattern: string): string[] {
  const alternatives = expandBraces(pattern);
  const out = new Set<string>();
  for (const alt of alternatives) {
    const parts = alt.split('/').filter((p, idx) => p !== '' || idx === 0);
    let current: string[] = ['/'];
    for (const part of parts.slice(1)) {
      const next: string[] = [];
      const magic = /[*?[]/.test(part);
      for (const dir of current) {
        if (!magic) {
          next.push(path.join(dir, part));
          continue;
        }
        const re = globSegmentToRegExp(part);
        let entries: string[] = [];
        try {
          entries = readdirSync(dir);
        } catch {
          continue;
        }
        for (const e of entries.sort()) {
          if (e.startsWith('.') && !part.startsWith('.')) continue;
          if (re.test(e)) next.push(path.join(dir, e));
        }
      }
      current = next;
    }
    for (const f of current) if (statStamp(f)) out.add(f);
  }
  return [...out].sort();
}

function expandBraces(pattern: string): string[] {
  const m = /\{([^{}]*)\}/.exec(pattern);
  if (!m) return [pattern];
  const before = pattern.slice(0, m.index);
  const after = pattern.slice(m.index + m[0].length);
  return (m[1] ?? '').split(',').flatMap((alt) => expandBraces(before + alt + after));
}

function globSegmentToRegExp(segment: string): RegExp {
  let re = '^';
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i] as string;
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const close = segment.indexOf(']', i + 1);
      if (close < 0) {
        re += '\\[';
      } else {
        let cls = segment.slice(i + 1, close);
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls.replace(/\\/g, '\\\\')}]`;
        i = close;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(re + '$');
}
