#!/usr/bin/env node
/**
 * pbx-agent command line. Exit codes: 0 ok, 1 invalid config (nothing applied), 2 usage, 3 failure.
 */
import { readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_SECRETS_DIR, md5Command, renderCommand, renderWatchCommand, schemaCommand, validateCommand } from './commands.js';
import { applyCommand, planCommand, type HostCommandOptions } from './host-commands.js';
import { runCommand, statusCommand, syncCommand } from './daemon-commands.js';
import { checkCommand } from './check-command.js';
import { EXIT, processIo, UsageError, type Io } from './output.js';
import { DEFAULT_SETTINGS_FILE } from '../settings.js';

const HELP = `pbx-agent: GitOps for Asterisk 20 on EC2. YAML in git → verified PJSIP, RTP and dialplan.

Usage:
  pbx-agent validate [DIR] [--json]
      Check a config repo (default: .). Every problem is listed with file:line:col.
      Exit 1 if there are errors. Use it in the config repo's CI and pre-commit hook.

  pbx-agent render [DIR] --out OUT [--diff] [--json] [--watch] [--revision REV]
                   [--external-address IP] [--secrets-dir DIR]
      Render the Asterisk files of a config repo into OUT (same layout as /etc/asterisk),
      and print which files change and which modules Asterisk would reload.
      --watch             keep running and render again whenever a file in DIR changes
      --external-address  the Elastic IP to use where pbx.yaml says external_address: auto
      --secrets-dir       where named secrets are read (default ${DEFAULT_SECRETS_DIR})

  pbx-agent plan [DIR] [--settings FILE] [--json] [--revision REV] [--external-address IP]
      Show what apply would change in the Asterisk config directory: file diffs, extensions
      added/changed/removed, the module reloads, and changes that need a restart. Touches nothing.

  pbx-agent apply [DIR] [--settings FILE] [--json] [--revision REV] [--external-address IP]
      One reconcile of a local config repo: write the changed files atomically, reload only the
      changed modules through AMI, read the live state back, and roll back if Asterisk did not
      take the change. Logs (JSON lines) go to stderr. Exit 0 applied or unchanged, 1 invalid
      config, 3 rolled back or failed.
      --settings  the agent's settings (default ${DEFAULT_SETTINGS_FILE}; built-in defaults if absent)

  pbx-agent run [--settings FILE]
      The daemon: follows the config repo of the settings (source.url), reconciles on the
      schedule, on pushes (webhook), on SIGHUP and on local edits, and watches for drift.
      JSON log lines on stdout. SIGTERM finishes the reconcile in progress, then exits 0.

  pbx-agent sync [--settings FILE] [--json]
      Fetch the config repo and reconcile once, now. Never overlaps a daemon run (a lock).

  pbx-agent status [--settings FILE] [--json]
      What is applied, the last run, drift, and whether the agent is healthy (exit 0) or not (3).

  pbx-agent check [DIR] [--settings FILE] [--json]
      Cloud checks on EC2 of the config the agent applied (or of DIR, default . without a
      source in the settings): the Elastic IP against external_address, local_net against the VPC,
      the security groups against the SIP ports and RTP range, AMI/SSH open to the world.
      Exit 3 on error-level findings (or when the checks cannot run).

  pbx-agent schema [pbx|extensions]
      Print the JSON Schema of pbx.yaml (default) or of an extensions file.

  pbx-agent md5 NUMBER [--realm REALM] < password
      Print the md5 credential of NUMBER for the YAML (the password is read from stdin and
      must pass the strength policy).

Options:
  -h, --help     this help
  -V, --version  print the version
`;

/** The version in the package.json of this installation: the nearest one above this file. */
function version(): string {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pbx-agent' && pkg.version) return pkg.version;
    } catch {
      // not here: look one level up
    }
    if (path.dirname(dir) === dir) return 'unknown';
  }
}

export async function main(argv: string[], io: Io = processIo, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'V' },
      json: { type: 'boolean' },
      diff: { type: 'boolean' },
      watch: { type: 'boolean' },
      out: { type: 'string', short: 'o' },
      revision: { type: 'string' },
      'external-address': { type: 'string' },
      'secrets-dir': { type: 'string' },
      realm: { type: 'string' },
      settings: { type: 'string', short: 's' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.version) {
    io.out(version());
    return EXIT.ok;
  }
  if (values.help || command === undefined || command === 'help') {
    io.out(HELP);
    return command === undefined && !values.help ? EXIT.usage : EXIT.ok;
  }
  const one = (what: string) => {
    if (rest.length > 1) throw new UsageError(`${command}: expected at most one ${what}, got ${rest.length}`);
    return rest[0];
  };
  switch (command) {
    case 'validate':
      return validateCommand({ dir: one('directory') ?? '.', json: values.json ?? false }, io);
    case 'render': {
      if (!values.out) throw new UsageError('render: --out OUT is required (the folder to render into)');
      const opts: Parameters<typeof renderCommand>[0] = {
        dir: one('directory') ?? '.',
        out: values.out,
        json: values.json ?? false,
        diff: values.diff ?? false,
        secretsDir: values['secrets-dir'] ?? DEFAULT_SECRETS_DIR,
      };
      if (values.revision !== undefined) opts.revision = values.revision;
      if (values['external-address'] !== undefined) opts.externalAddress = values['external-address'];
      return values.watch ? renderWatchCommand(opts, io) : renderCommand(opts, io);
    }
    case 'plan':
    case 'apply': {
      const opts: HostCommandOptions = { dir: one('directory') ?? '.', json: values.json ?? false };
      if (values.settings !== undefined) opts.settingsFile = values.settings;
      if (values.revision !== undefined) opts.revision = values.revision;
      if (values['external-address'] !== undefined) opts.externalAddress = values['external-address'];
      return command === 'plan' ? planCommand(opts, io) : applyCommand(opts, io);
    }
    case 'run':
      return runCommand(values.settings !== undefined ? { settingsFile: values.settings } : {}, io);
    case 'sync':
    case 'status': {
      const opts = { json: values.json ?? false, ...(values.settings !== undefined ? { settingsFile: values.settings } : {}) };
      return command === 'sync' ? syncCommand(opts, io) : statusCommand(opts, io);
    }
    case 'check':
      return checkCommand({ ...(rest[0] !== undefined ? { dir: one('directory')! } : {}), json: values.json ?? false, ...(values.settings !== undefined ? { settingsFile: values.settings } : {}) }, io);
    case 'schema':
      return schemaCommand(one('schema name') ?? 'pbx', io);
    case 'md5': {
      const number = one('extension number');
      if (number === undefined) throw new UsageError('md5: expected an extension number, e.g. pbx-agent md5 1001 < password-file');
      return md5Command(number, values.realm ?? 'asterisk', io, stdin);
    }
    default:
      throw new UsageError(`unknown command "${command}"; see pbx-agent --help`);
  }
}

/**
 * True when this file is the program node was asked to run, however it was reached: directly, or
 * through a symlink such as /usr/local/bin/pbx-agent or npm's bin link (node runs the link's
 * target, so import.meta.url names the real file while argv[1] names the link), and whatever
 * characters the path holds (`#`, `%`, spaces are escaped in a URL, never in argv). False when the
 * module is imported, e.g. by the tests.
 */
export function isMainModule(argv1: string | undefined, moduleUrl: string): boolean {
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

if (isMainModule(process.argv[1], import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        processIo.err(`pbx-agent: ${(err as Error).message}\nRun pbx-agent --help for usage.`);
        process.exitCode = EXIT.usage;
      } else {
        processIo.err(`pbx-agent: ${(err as Error).stack ?? String(err)}`);
        process.exitCode = EXIT.failure;
      }
    },
  );
}
