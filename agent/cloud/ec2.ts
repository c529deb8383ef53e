/**
 * The daemon's side of the EC2 API: it never imports @aws-sdk/* itself. Each query spawns
 * ec2-worker (the same Node binary and flags, so it also works under tsx in tests), passes the
 * input as JSON on stdin, reads the answer as JSON from stdout, and kills the worker if it takes
 * longer than the timeout. The ~100 MB the SDK costs is gone again when the worker exits.
 *
 * The kill timeout and the worker's retries are derived from each other: by default the kill
 * comes after the worst case of the retry plan (every attempt timing out, every backoff pause at
 * its cap, two calls in a row) plus the worker's start-up; and the worker gets a deadline a
 * little before the kill, after which it makes no more attempts. So a hung endpoint is reported
 * as what it is (a timeout of the EC2 call) rather than as a killed worker.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Ec2WorkerInput, Ec2WorkerOutput } from './ec2-protocol.js';
import { DEFAULT_IMDS_ENDPOINT } from './imds.js';

export type * from './ec2-protocol.js';

/** How the worker retries one EC2 call. */
export interface Ec2RetryPlan {
  /** Attempts per call when throttled or on a transient failure (1 = no retry). */
  maxAttempts: number;
  /** Per attempt: connecting, sending and the whole answer. */
  requestTimeoutMs: number;
  /** First backoff pause; doubled each attempt, with jitter, capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** EC2 Describe calls answer in well under a second; three tries cover a throttling burst. */
export const DEFAULT_EC2_RETRY_PLAN: Readonly<Ec2RetryPlan> = { maxAttempts: 3, requestTimeoutMs: 3000, baseDelayMs: 500, maxDelayMs: 2000 };
/** Node's start, importing the SDK (over a second of CPU on a t3.micro) and the first signing. */
export const WORKER_START_ALLOWANCE_MS = 8000;
/** Between the worker's deadline and the kill: writing its answer and exiting. */
export const WORKER_EXIT_MARGIN_MS = 2000;
/** Calls made one after the other at most: DescribeInstances, then DescribeSecurityGroups (DescribeAddresses runs beside them). */
export const SEQUENTIAL_CALLS = 2;

/** The longest one call can take under `plan`: every attempt times out, every pause at its cap. */
export function worstCallMs(plan: Ec2RetryPlan): number {
  let ms = plan.maxAttempts * plan.requestTimeoutMs;
  for (let n = 1; n < plan.maxAttempts; n++) ms += Math.min(plan.maxDelayMs, plan.baseDelayMs * 2 ** (n - 1));
  return ms;
}

/** The kill timeout that lets the worker run `plan` to its end and still answer. */
export function workerKillTimeoutMs(plan: Ec2RetryPlan): number {
  return WORKER_START_ALLOWANCE_MS + SEQUENTIAL_CALLS * worstCallMs(plan) + WORKER_EXIT_MARGIN_MS;
}

/** The worker's own deadline under a kill timeout: the exit margin earlier (a quarter of a short one). */
export function workerDeadlineMs(killTimeoutMs: number): number {
  return Math.max(0, killTimeoutMs - Math.min(WORKER_EXIT_MARGIN_MS, killTimeoutMs / 4));
}

export interface Ec2QueryOptions {
  /**
   * The whole worker run, spawn to exit; the worker is killed after it. Default:
   * workerKillTimeoutMs() of the input's retry plan.
   */
  timeoutMs?: number;
  /** The worker's environment; default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * IMDS endpoint (settings cloud.imds_endpoint), passed on as AWS_EC2_METADATA_SERVICE_ENDPOINT
   * so that the SDK fetches the instance role's credentials from the same place.
   */
  imdsEndpoint?: string;
}

export type Ec2WorkerErrorCode = 'timeout' | 'spawn_failed' | 'crashed' | 'bad_output';

export class Ec2WorkerError extends Error {
  constructor(
    readonly code: Ec2WorkerErrorCode,
    message: string,
    readonly stderr = '',
  ) {
    super(message);
    this.name = 'Ec2WorkerError';
  }
}

/** ec2-worker next to this module: .ts when running under tsx, .js in dist/. */
export function ec2WorkerPath(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`./ec2-worker${ext}`, import.meta.url));
}

/** Flags that decide how modules load (e.g. `--import tsx` in tests); their value may follow. */
const LOADER_FLAGS = new Set(['--import', '--require', '-r', '--loader', '--experimental-loader', '--conditions', '-C']);
const PLAIN_FLAGS = /^--(enable-source-maps|no-warnings|no-deprecation|experimental-strip-types|experimental-transform-types|experimental-vm-modules)$/;

/**
 * Node flags for the worker: only those that decide how modules load. Everything else is
 * dropped: `-e`/`-p` code or `--input-type` would run the parent's script instead of the worker,
 * `--inspect` would clash on a port, `--test`/`--watch` would change what node does.
 */
export function workerExecArgv(execArgv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i]!;
    const name = a.split('=')[0]!;
    if (LOADER_FLAGS.has(name)) {
      if (a.includes('=')) out.push(a);
      else if (i + 1 < execArgv.length) out.push(a, execArgv[++i]!);
    } else if (PLAIN_FLAGS.test(a)) {
      out.push(a);
    } else if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') {
      i++; // skip the code that follows
    }
  }
  return out;
}

export interface Ec2QueryResult {
  output: Ec2WorkerOutput;
  /** Spawn to exit, ms. */
  wallMs: number;
}

/** What the caller gives; the deadline follows from the kill timeout. */
export type Ec2WorkerRequest = Omit<Ec2WorkerInput, 'deadlineMs'>;

export async function queryEc2(request: Ec2WorkerRequest, options: Ec2QueryOptions = {}): Promise<Ec2QueryResult> {
  const worker = ec2WorkerPath();
  if (!existsSync(worker)) throw new Ec2WorkerError('spawn_failed', `the EC2 worker is missing: ${worker}`);
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  if (options.imdsEndpoint && options.imdsEndpoint.replace(/\/+$/, '') !== DEFAULT_IMDS_ENDPOINT) {
    env.AWS_EC2_METADATA_SERVICE_ENDPOINT = options.imdsEndpoint;
  }
  // The SDK must not fall back to IMDSv1 for the role's credentials either.
  env.AWS_EC2_METADATA_V1_DISABLED = 'true';
  const timeoutMs = options.timeoutMs ?? workerKillTimeoutMs(request);
  const input: Ec2WorkerInput = { ...request, deadlineMs: workerDeadlineMs(timeoutMs) };

  const t0 = performance.now();
  const child = spawn(process.execPath, [...workerExecArgv(), worker], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 16 * 1024) stderr += d;
  });
  child.stdin.on('error', () => {
    /* the worker died before reading its input: reported by the exit below */
  });
  child.stdin.end(JSON.stringify(input));

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  let exit: { code: number | null; signal: NodeJS.Signals | null };
  try {
    exit = await new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
  } catch (e) {
    throw new Ec2WorkerError('spawn_failed', `the EC2 worker could not be started: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
  const wallMs = performance.now() - t0;
  const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';
  if (timedOut) throw new Ec2WorkerError('timeout', `the EC2 worker did not finish within ${timeoutMs} ms and was killed`, stderr);
  if (exit.code !== 0) {
    throw new Ec2WorkerError('crashed', `the EC2 worker failed (${exit.signal ?? `exit ${exit.code}`}): ${lastLine(stderr) || 'no message'}`, stderr);
  }
  try {
    const output = JSON.parse(lastLine(stdout)) as Ec2WorkerOutput;
    if (!output || typeof output !== 'object' || !output.addresses) throw new Error('no addresses in the answer');
    return { output, wallMs };
  } catch (e) {
    throw new Ec2WorkerError('bad_output', `the EC2 worker's answer could not be read: ${(e as Error).message}`, stderr);
  }
}
