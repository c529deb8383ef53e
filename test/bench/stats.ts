/**
 * Measurement helpers shared by benchmark sections: repeated timing with warm-up, medians,
 * budgets, and running a child process while capturing its wall time and peak RSS.
 */
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { QUIET_MS } from '../../agent/daemon/heap.js';

/**
 * How long a daemon is left idle before its RSS is read: it collects once it has been without a
 * run for QUIET_MS (agent/daemon/heap.ts), and a second more is slack.
 */
export const IDLE_BEFORE_RSS_MS = QUIET_MS + 1000;

/** The note under an RSS table that says when it was read. */
export const RSS_READ_NOTE = `read once the daemon has been idle for ${IDLE_BEFORE_RSS_MS / 1000} s (it collects after ${QUIET_MS / 1000} s without a run)`;

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of nothing');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Runs `fn` `warmup` times unmeasured, then `runs` times, returning each run's result. `fn`
 * measures itself (it knows which parts count), so this only orchestrates.
 */
export async function repeat<T>(runs: number, warmup: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  for (let i = 0; i < warmup; i++) await fn(-1 - i);
  const out: T[] = [];
  for (let i = 0; i < runs; i++) out.push(await fn(i));
  return out;
}

/** Median of each numeric field over a list of samples with the same keys. */
export function medianOf<K extends string>(samples: ReadonlyArray<Record<K, number>>): Record<K, number> {
  const keys = Object.keys(samples[0] ?? {}) as K[];
  return Object.fromEntries(keys.map((k) => [k, median(samples.map((s) => s[k]))])) as Record<K, number>;
}

// ---------------------------------------------------------------------------------------------
// Budgets

export interface Budget {
  /** What is limited, for the summary: "validate+render in-process, 10,000 extensions". */
  what: string;
  limit: number;
  unit: string;
}

export interface BudgetCheck extends Budget {
  actual: number;
  pass: boolean;
}

export function check(budget: Budget, actual: number): BudgetCheck {
  return { ...budget, actual, pass: actual < budget.limit };
}

export function verdict(c: BudgetCheck): string {
  return c.pass ? 'PASS' : 'OVER';
}

// ---------------------------------------------------------------------------------------------
// Child processes

const here = path.dirname(fileURLToPath(import.meta.url));
/** Preloaded into measured children; writes their peak RSS on exit. */
export const RSS_PROBE = pathToFileURL(path.join(here, 'rss-probe.mjs')).href;
const RSS_ENV = 'PBX_BENCH_RSS_FILE';

export interface ChildRun {
  /** Wall time from spawn to exit, ms (includes node start-up). */
  wallMs: number;
  /** Peak resident set size of the child, MiB (process.resourceUsage().maxRSS). */
  peakRssMb: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node --import rss-probe.mjs ...args` and reports wall time and the child's peak RSS.
 * `rssFile` must be a path the caller owns; it is removed afterwards.
 */
export async function runNode(args: string[], opts: { cwd: string; rssFile: string }): Promise<ChildRun> {
  await rm(opts.rssFile, { force: true });
  const t0 = performance.now();
  const child = spawn(process.execPath, ['--import', RSS_PROBE, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, [RSS_ENV]: opts.rssFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (c) => resolve(c));
  });
  const wallMs = performance.now() - t0;
  let peakRssMb = NaN;
  try {
    peakRssMb = Number((await readFile(opts.rssFile, 'utf8')).trim()) / 1024;
  } catch {
    /* the probe did not run (crash before exit): reported as NaN */
  }
  await rm(opts.rssFile, { force: true });
  return { wallMs, peakRssMb, code, stdout, stderr };
}
