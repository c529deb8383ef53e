/**
 * Schema validation of one parsed YAML file with zod, every issue mapped back to file:line:col.
 */
import type { z } from 'zod';
import { fieldPath, foundValue, type ConfigIssue } from './issues.js';
import { locate, valueAt, type ParsedYaml } from './yaml-document.js';

/** Fields whose values must never be echoed in a message (a PIN typed into the YAML by mistake included). */
const SENSITIVE_FIELDS = new Set(['password', 'md5', 'pin', 'moderator_pin']);

const TYPE_WORDS: Record<string, string> = {
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  string: 'text',
  array: 'a list',
  object: 'a map',
  record: 'a map',
};

/** Messages for zod issues that the schema did not word itself. */
const errorMap: z.core.$ZodErrorMap = (iss) => {
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${TYPE_WORDS[iss.expected] ?? iss.expected}`;
    case 'too_small':
      if (iss.origin === 'array') return `expected at least ${iss.minimum} items`;
      if (iss.origin === 'string') return `expected at least ${iss.minimum} characters`;
      return `expected at least ${iss.minimum}`;
    case 'too_big':
      if (iss.origin === 'array') return `expected at most ${iss.maximum} items`;
      if (iss.origin === 'string') return `expected at most ${iss.maximum} characters`;
      return `expected at most ${iss.maximum}`;
    case 'invalid_format':
      return 'has the wrong format';
    default:
      return undefined;
  }
};

type AnySchema = z.core.$ZodType;

/** The keys an object schema allows at `path` of the data, for "did you mean" suggestions. */
function allowedKeysAt(schema: AnySchema, path: readonly PropertyKey[]): string[] {
  let cur: AnySchema | undefined = schema;
  let i = 0;
  for (let guard = 0; cur && guard < 64; guard++) {
    const def = cur._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case 'optional':
      case 'default':
      case 'prefault':
      case 'nullable':
      case 'readonly':
        cur = def.innerType as AnySchema;
        continue;
      case 'pipe':
        cur = def.in as AnySchema;
        continue;
      case 'union': {
        const options = def.options as AnySchema[];
        cur = options.find((o) => (o._zod.def as { type: string }).type === 'object');
        continue;
      }
      case 'object': {
        const shape = def.shape as Record<string, AnySchema>;
        if (i === path.length) return Object.keys(shape);
        cur = shape[String(path[i++])];
        continue;
      }
      case 'array':
        if (i === path.length) return [];
        i++;
        cur = def.element as AnySchema;
        continue;
      case 'record':
        if (i === path.length) return [];
        i++;
        cur = def.valueType as AnySchema;
        continue;
      default:
        return [];
    }
  }
  return [];
}

export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

export function suggestKey(unknown: string, allowed: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of allowed) {
    const d = editDistance(unknown.toLowerCase(), k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(unknown.length / 3)) ? best : undefined;
}

/** Validates `parsed.data` against `schema`; returns the typed data or located issues. */
export function validateFile<S extends z.ZodType>(
  parsed: ParsedYaml,
  schema: S,
): { data?: z.output<S>; issues: ConfigIssue[] } {
  const result = schema.safeParse(parsed.data ?? {}, { error: errorMap });
  if (result.success) return { data: result.data, issues: [] };

  const issues: ConfigIssue[] = [];
  for (const iss of result.error.issues) {
    const path = iss.path as PropertyKey[];
    if (iss.code === 'unrecognized_keys') {
      const allowed = allowedKeysAt(schema, path);
      for (const key of iss.keys) {
        const pos = locate(parsed, [...path, key], true);
        const suggestion = suggestKey(key, allowed);
        issues.push({
          severity: 'error',
          file: parsed.file,
          line: pos.line,
          column: pos.column,
          field: fieldPath([...path, key]),
          message: suggestion
            ? `unknown field ${JSON.stringify(key)}; did you mean "${suggestion}"?`
            : `unknown field ${JSON.stringify(key)}; expected one of: ${allowed.join(', ')}`,
        });
      }
      continue;
    }
    if (iss.code === 'invalid_key') {
      // A map key that is not a valid name (codec profile, context): point at the key itself.
      const pos = locate(parsed, path, true);
      const key = String(path[path.length - 1]);
      issues.push({
        severity: 'error',
        file: parsed.file,
        line: pos.line,
        column: pos.column,
        field: fieldPath(path),
        message: `${JSON.stringify(key)} is not a valid name: ${iss.issues[0]?.message ?? 'invalid name'}`,
      });
      continue;
    }
    const pos = locate(parsed, path);
    const value = valueAt(parsed.data, path);
    const sensitive = path.some((k) => SENSITIVE_FIELDS.has(String(k)));
    const issue: ConfigIssue = {
      severity: 'error',
      file: parsed.file,
      line: pos.line,
      column: pos.column,
      field: fieldPath(path),
      message: value === undefined ? `is missing: ${iss.message}` : iss.message,
    };
    const found = sensitive ? undefined : foundValue(value);
    if (found !== undefined) issue.found = found;
    issues.push(issue);
  }
  return { issues };
}
