/**
 * A writer for Asterisk's config syntax (asterisk.conf(5): `[section]`, `key=value`, `;` comments).
 *
 * The schema already keeps YAML values to safe characters. This writer checks every line again
 * and throws rather than emit text that could open a section, start a comment, continue onto a
 * new line or form a directive (`#include`, `#exec`): defence in depth, so that a future field
 * added to the schema without a pattern cannot become an injection.
 */
export class UnsafeConfigValueError extends Error {
  constructor(readonly what: string, readonly value: string) {
    super(`refusing to render ${what} ${JSON.stringify(value)}: it could inject Asterisk configuration`);
  }
}

const CONTROL = /[\u0000-\u001f\u007f]/;
const SECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const KEY = /^[a-z][a-z0-9_]*$/;
/** `exten`, `same`, `include`, or a voicemail box number. */
const ARROW_KEY = /^[A-Za-z0-9*#+_-]+$/;
/**
 * Control characters (a line break ends the line), `;` (starts a comment anywhere in a line unless
 * escaped; we never need one in a value), and `[` or `#` first on the line (a section header or
 * a directive): asterisk main/config.c.
 */
const UNSAFE_VALUE = /[\u0000-\u001f\u007f;]|^\s*[[#]/;
/** Option names are a handful of constants; checking each once keeps the writer fast. */
const checkedKeys = new Set<string>();

function checkKey(key: string, pattern: RegExp): void {
  if (checkedKeys.has(key)) return;
  if (!pattern.test(key)) throw new UnsafeConfigValueError('the option name', key);
  checkedKeys.add(key);
}

function checkValue(key: string, value: string): void {
  if (UNSAFE_VALUE.test(value)) throw new UnsafeConfigValueError(`the value of ${key}`, value);
}

export class ConfText {
  private readonly lines: string[] = [];
  /** Characters so far in toString()'s result: where the next line starts. */
  private length = 0;

  private push(line: string): void {
    this.lines.push(line);
    this.length += line.length + 1;
  }

  comment(text: string): this {
    if (CONTROL.test(text)) throw new UnsafeConfigValueError('a comment', text);
    this.push(text === '' ? ';' : `; ${text}`);
    return this;
  }

  section(name: string, comment?: string): this {
    if (!SECTION_NAME.test(name)) throw new UnsafeConfigValueError('the section name', name);
    if (this.lines.length > 0 && this.lines[this.lines.length - 1] !== '') this.push('');
    if (comment !== undefined) this.comment(comment);
    this.push(`[${name}]`);
    return this;
  }

  /** `key=value`. */
  set(key: string, value: string | number): this {
    checkKey(key, KEY);
    const text = String(value);
    checkValue(key, text);
    this.push(`${key}=${text}`);
    return this;
  }

  /** `key => value`, the form extensions.conf and voicemail.conf use. */
  arrow(key: string, value: string): this {
    if (!ARROW_KEY.test(key)) throw new UnsafeConfigValueError('the key', key);
    checkValue(key, value);
    this.push(`${key} => ${value}`);
    return this;
  }

  /**
   * Lines another ConfText made (its toBlock()), each already checked there: sections, separated
   * from what comes before by a blank line as section() does. Returns where the block starts in
   * toString()'s result.
   */
  block(text: string): number {
    if (this.lines.length > 0 && this.lines[this.lines.length - 1] !== '') this.push('');
    const at = this.length;
    this.push(text);
    return at;
  }

  /** The lines so far for block(): without the final line break. */
  toBlock(): string {
    return this.lines.join('\n');
  }

  blank(): this {
    this.push('');
    return this;
  }

  toString(): string {
    return this.lines.join('\n') + '\n';
  }
}
