/**
 * The daemon's side of the EC2 API: it never imports @aws-sdk/* itself. Each query spawns
 * ec2-worker (the same Node binary and flags, so it also works under tsx in tests), passes the
 * input as JSON on stdin, reads the answer as JSON from stdout, and kills the worker if it takes
 * longer than the timeout. The ~100 MB the SDK costs is gone again when the worker exits.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Ec2WorkerInput, Ec2WorkerOutput } from './ec2-protocol.js';
import { DEFAULT_IMDS_ENDPOINT } from './imds.js';

export type * from './ec2-protocol.js';

export interface Ec2QueryOptions {
  /** The whole worker run, spawn to exit; default 30 s. The worker is killed after it. */
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

export async function queryEc2(input: Ec2WorkerInput, options: Ec2QueryOptions = {}): Promise<Ec2QueryResult> {
  const worker = ec2WorkerPath();
  if (!existsSync(worker)) throw new Ec2WorkerError('spawn_failed', `the EC2 worker is missing: ${worker}`);
  const env: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  if (options.imdsEndpoint && options.imdsEndpoint.replace(/\/+$/, '') !== DEFAULT_IMDS_ENDPOINT) {
    env.AWS_EC2_METADATA_SERVICE_ENDPOINT = options.imdsEndpoint;
  }
  // The SDK must not fall back to IMDSv1 for the role's credentials either.
  env.AWS_EC2_METADATA_V1_DISABLED = 'true';
  const timeoutMs = options.timeoutMs ?? 30_000;

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
