/**
 * The CLI commands of the config-repo contract: validate, render, schema, md5.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { ExtensionsFile, SiteFile } from '../../schemas/config-repo.js';
import { DirectoryFileStore } from '../apply/files.js';
import { hasErrors, loadDesiredState, readConfigRepo } from '../load/index.js';
import { passwordWeakness } from '../load/password-policy.js';
import { renderConfigRepo } from '../pipeline.js';
import { checkRemovals, planChanges } from '../plan/index.js';
import { DEFAULT_SECRETS_DIR, DirectorySecretStore, md5Credential, type HostFacts } from '../resolve/index.js';
import { workTreeRevision } from '../source/revision.js';
import { countLine, EXIT, issuesJson, printIssues, printPlan, UsageError, whenOutputCloses, type Io } from './output.js';

export interface ValidateOptions {
  dir: string;
  json: boolean;
}

export async function validateCommand(opts: ValidateOptions, io: Io): Promise<number> {
  const loaded = loadDesiredState(await readConfigRepo(opts.dir));
  const ok = !hasErrors(loaded.issues);
  if (opts.json) {
    io.out(JSON.stringify({ ok, dir: opts.dir, summary: loaded.summary, ...issuesJson(loaded.issues) }, null, 2));
  } else {
    printIssues(io, loaded.issues);
    const { extensions, disabled } = loaded.summary;
    if (ok) {
      io.out(
        `${opts.dir}: valid: ${extensions} extension${extensions === 1 ? '' : 's'}` +
          `${disabled ? ` (+${disabled} disabled)` : ''}` +
          `${loaded.issues.length ? `, ${countLine(loaded.issues)}` : ''}`,
      );
    } else {
      io.err(`${opts.dir}: invalid: ${countLine(loaded.issues)}; nothing was rendered or applied`);
    }
  }
  return ok ? EXIT.ok : EXIT.invalidConfig;
}

export interface RenderOptions {
  dir: string;
  out: string;
  json: boolean;
  diff: boolean;
  revision?: string;
  externalAddress?: string;
  secretsDir: string;
}

function cliHost(opts: RenderOptions): HostFacts {
  return {
    secrets: new DirectorySecretStore(opts.secretsDir),
    elasticIp: async () =>
      opts.externalAddress !== undefined
        ? { address: opts.externalAddress }
        : { problem: 'no Elastic IP was given; pass --external-address IP to render with it' },
  };
}

/**
 * `render --watch`: render now, then again whenever a file of the config repo changes (a burst
 * of saves renders once), until interrupted. Local-path mode of the daemon, without Asterisk.
 */
export async function renderWatchCommand(opts: RenderOptions, io: Io): Promise<number> {
  const { watch } = await import('chokidar');
  const { SyncRunner } = await import('../daemon/runner.js');
  const runner = new SyncRunner(
    async () => {
      const code = await renderCommand(opts, io).catch((e: Error) => {
        io.err(`render: ${e.message}`);
        return EXIT.failure;
      });
      io.out(`Watching ${opts.dir} for changes (Ctrl-C to stop)`);
      // A failed render waits for the next edit, not for a retry.
      return { ok: code === EXIT.ok || code === EXIT.invalidConfig };
    },
    { backoffBaseMs: 0, backoffMaxMs: 0 },
  );
  const watcher = watch(opts.dir, {
    ignoreInitial: true,
    ignored: (p: string) => p.split('/').includes('.git'),
    awaitWriteFinish: { stabilityThreshold: 100, pollInterval: 50 },
  });
  await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  watcher.on('all', () => runner.request('file'));
  runner.request('startup');
  return new Promise<number>((resolve) => {
    const stop = () => {
      void watcher.close().then(() => runner.stop()).then(() => resolve(EXIT.ok));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    // `render --watch | head`: once nobody reads, watching on is pointless.
    whenOutputCloses(stop);
  });
}

/**
 * --out must be a directory or not exist yet (it is created): a file there, or on the way there,
 * is said plainly before anything is rendered.
 */
async function checkOutDir(out: string): Promise<void> {
  for (let dir = path.resolve(out); ; dir = path.dirname(dir)) {
    const st = await stat(dir).catch(() => undefined);
    if (st?.isDirectory()) return;
    if (st) {
      const what = dir === path.resolve(out) ? 'is a file' : `is inside ${dir}, which is a file`;
      throw new UsageError(`--out ${out}: ${what}; expected a directory to render into (created if missing)`);
    }
    if (path.dirname(dir) === dir) return;
  }
}

export async function renderCommand(opts: RenderOptions, io: Io): Promise<number> {
  await checkOutDir(opts.out);
  const revision = opts.revision ?? (await workTreeRevision(opts.dir));
  const outcome = await renderConfigRepo(opts.dir, cliHost(opts), revision);
  if (!outcome.files) {
    if (opts.json) io.out(JSON.stringify({ ok: false, dir: opts.dir, ...issuesJson(outcome.issues) }, null, 2));
    else {
      printIssues(io, outcome.issues);
      io.err(`${opts.dir}: invalid: ${countLine(outcome.issues)}; nothing was rendered`);
    }
    return EXIT.invalidConfig;
  }

  const store = new DirectoryFileStore(opts.out);
  const onDisk = new Map<string, string | undefined>();
  for (const f of outcome.files) onDisk.set(f.path, await store.read(f.path));
  const plan = planChanges(outcome.files, onDisk);
  const refusal = checkRemovals(plan, outcome.state!.removalGuard);
  for (const change of plan.files) if (change.action !== 'unchanged') await store.writeAtomic(change.path, change.rendered.text);

  if (opts.json) {
    io.out(
      JSON.stringify(
        {
          ok: true,
          dir: opts.dir,
          out: store.root,
          revision,
          summary: outcome.summary,
          files: plan.files.map((f) => ({ path: f.path, module: f.module, action: f.action, bodySha256: f.rendered.bodyHash })),
          reloads: plan.reloads,
          extensions: plan.extensions,
          conferences: plan.conferences,
          lockedOut: plan.lockedOut,
          restartReasons: plan.restartReasons,
          planWarnings: plan.warnings,
          wouldRefuse: refusal ?? null,
          ...issuesJson(outcome.issues),
        },
        null,
        2,
      ),
    );
    return EXIT.ok;
  }
  printIssues(io, outcome.issues);
  const { extensions, disabled } = outcome.summary;
  io.out(
    `Rendered ${opts.dir} (revision ${revision}, ${extensions} extension${extensions === 1 ? '' : 's'}${disabled ? `, ${disabled} disabled` : ''}) into ${store.root}`,
  );
  printPlan(io, plan, onDisk, { diff: opts.diff, verb: 'would' });
  // OUT is a folder, not the PBX: rendered all the same, but said as apply would say it.
  if (refusal) io.out(`WARNING: apply would refuse this change against the files in ${store.root}: ${refusal.reason}`);
  return EXIT.ok;
}

export function schemaCommand(which: string, io: Io): number {
  const schemas: Record<string, z.ZodType> = { pbx: SiteFile, extensions: ExtensionsFile };
  const schema = schemas[which];
  if (!schema) throw new UsageError(`schema: expected "pbx" or "extensions", got ${JSON.stringify(which)}`);
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
  const titled = {
    title: which === 'pbx' ? 'pbx-agent pbx.yaml' : 'pbx-agent extensions file',
    ...json,
  };
  io.out(JSON.stringify(titled, null, 2));
  return EXIT.ok;
}

async function readLine(input: NodeJS.ReadableStream): Promise<string> {
  const rl = createInterface({ input, terminal: false });
  for await (const line of rl) {
    rl.close();
    return line;
  }
  return '';
}

/** `pbx-agent md5 1001 < password-file` prints the md5 line for the YAML. */
export async function md5Command(number: string, realm: string, io: Io, input: NodeJS.ReadableStream): Promise<number> {
  if (!/^[0-9]{2,12}$/.test(number)) throw new UsageError(`md5: expected an extension number of 2 to 12 digits, got ${JSON.stringify(number)}`);
  const password = await readLine(input);
  const weakness = passwordWeakness(password, number);
  if (weakness) {
    io.err(`md5: the password ${weakness}; use at least 12 characters mixing letters and digits`);
    return EXIT.invalidConfig;
  }
  io.out(`md5: ${md5Credential(number, realm, password)}`);
  return EXIT.ok;
}

export { DEFAULT_SECRETS_DIR };
