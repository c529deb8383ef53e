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
import { describeError, EXIT, processIo, quietOnClosedOutput, UsageError, type Io } from './output.js';
import { REVISION_PATTERN } from '../render/index.js';
import { nonPublicAddressKind } from '../load/cross-check.js';
import { Ipv4 } from '../../schemas/config-repo.js';
import { DEFAULT_SETTINGS_FILE } from '../settings.js';

/** What each command is, as `pbx-agent --help` and `pbx-agent COMMAND --help` print it. */
interface CommandHelp {
  usage: string;
  text: string;
  /** The options the command takes; any other is a usage error. */
  options: readonly OptionName[];
}

const COMMANDS = {
  validate: {
    usage: 'pbx-agent validate [DIR] [--json]',
    text: `Check a config repo (default: .). Every problem is listed with file:line:col.
Exit 1 if there are errors. Use it in the config repo's CI and pre-commit hook.`,
    options: ['json'],
  },
  render: {
    // Continuation lines line up under [DIR] in the list of all commands.
    usage: `pbx-agent render [DIR] --out OUT [--diff] [--json] [--watch] [--revision REV]
                   [--external-address IP] [--secrets-dir DIR]`,
    text: `Render the Asterisk files of a config repo into OUT (same layout as /etc/asterisk),
and print which files change and which modules Asterisk would reload.
--diff              show what changes in each file (credentials and PINs redacted)
--watch             keep running and render again whenever a file in DIR changes
--revision          the revision written into the file headers (default: the git commit)
--external-address  the Elastic IP to use where pbx.yaml says external_address: auto
--secrets-dir       where named secrets are read (default ${DEFAULT_SECRETS_DIR})`,
    options: ['out', 'diff', 'json', 'watch', 'revision', 'external-address', 'secrets-dir'],
  },
  plan: {
    usage: `pbx-agent plan [DIR] [--settings FILE] [--json] [--revision REV] [--external-address IP]
                 [--allow-mass-removal]`,
    text: `Show what apply would change in the Asterisk config directory: file diffs, extensions
added/changed/removed, what the change would do to the phones, the module reloads, and
changes that need a restart. Touches nothing. Exit 1 when apply would refuse the change.`,
    options: ['settings', 'json', 'revision', 'external-address', 'allow-mass-removal'],
  },
  apply: {
    usage: `pbx-agent apply [DIR] [--settings FILE] [--json] [--revision REV] [--external-address IP]
                  [--allow-mass-removal]`,
    text: `One reconcile of a local config repo: write the changed files atomically, reload only the
changed modules through AMI, read the live state back, and roll back if Asterisk did not
take the change. Logs (JSON lines) go to stderr. Exit 0 applied or unchanged, 1 invalid
config or refused, 3 rolled back or failed.
--settings            the agent's settings (default ${DEFAULT_SETTINGS_FILE}; built-in defaults if absent)
--allow-mass-removal  apply a change that removes (or locks out) every extension, or more than
                      removal_guard in pbx.yaml allows; without it such a change is refused`,
    options: ['settings', 'json', 'revision', 'external-address', 'allow-mass-removal'],
  },
  run: {
    usage: 'pbx-agent run [--settings FILE]',
    text: `The daemon: follows the config repo of the settings (source.url), reconciles on the
schedule, on pushes (webhook), on SIGHUP and on local edits, and watches for drift.
JSON log lines on stdout. SIGTERM finishes the reconcile in progress, then exits 0.`,
    options: ['settings'],
  },
  sync: {
    usage: 'pbx-agent sync [--settings FILE] [--json] [--allow-mass-removal]',
    text: `Fetch the config repo and reconcile once, now. Never overlaps a daemon run (a lock).
--allow-mass-removal  apply a change the removal guard refuses (see apply)`,
    options: ['settings', 'json', 'allow-mass-removal'],
  },
  status: {
    usage: 'pbx-agent status [--settings FILE] [--json]',
    text: 'What is applied, the last run, drift, and whether the agent is healthy (exit 0) or not (3).',
    options: ['settings', 'json'],
  },
  check: {
    usage: 'pbx-agent check [DIR] [--settings FILE] [--json]',
    text: `Cloud checks on EC2 of the config the agent applied (or of DIR, default . without a
source in the settings): the Elastic IP against external_address, local_net against the VPC,
the security groups against the SIP ports and RTP range, AMI/SSH open to the world.
Exit 3 on error-level findings (or when the checks cannot run).`,
    options: ['settings', 'json'],
  },
  schema: {
    usage: 'pbx-agent schema [pbx|extensions]',
    text: 'Print the JSON Schema of pbx.yaml (default) or of an extensions file.',
    options: [],
  },
  md5: {
    usage: 'pbx-agent md5 NUMBER [--realm REALM] < password',
    text: `Print the md5 credential of NUMBER for the YAML (the password is read from stdin and
must pass the strength policy). --realm is sip.realm of pbx.yaml (default asterisk).`,
    options: ['realm'],
  },
} satisfies Record<string, CommandHelp>;

type CommandName = keyof typeof COMMANDS;

const indent = (text: string, by: string) => text.split('\n').map((l) => (l ? by + l : l)).join('\n');

const HELP = `pbx-agent: GitOps for Asterisk 20 on EC2. YAML in git → verified PJSIP, RTP and dialplan.

Usage:
${Object.values(COMMANDS)
  .map((c) => `  ${c.usage}\n${indent(c.text, '      ')}`)
  .join('\n\n')}

Options:
  -h, --help     this help; pbx-agent COMMAND --help prints the help of one command
  -V, --version  print the version
`;

function commandHelp(name: CommandName): string {
  const c = COMMANDS[name];
  // "Usage: " is 5 characters wider than the 2-space indent of the list of all commands.
  const usage = c.usage.replace(/\n/g, '\n     ');
  return `Usage: ${usage}\n\n${c.text}\n\nExit codes: 0 success, 1 invalid config repo or settings, 2 usage error, 3 other failure.\nAll commands: pbx-agent --help\n`;
}

function isCommand(name: string | undefined): name is CommandName {
  return name !== undefined && Object.hasOwn(COMMANDS, name);
}

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

const OPTIONS = {
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
  'allow-mass-removal': { type: 'boolean' },
} as const;
type OptionName = Exclude<keyof typeof OPTIONS, 'help' | 'version'>;

/**
 * Runs one command and answers its exit code. Never throws: a usage error is explained with
 * exit 2, anything else with exit 3, and neither prints a stack trace (the operator can do
 * nothing with one).
 */
export async function main(argv: string[], io: Io = processIo, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  let command: string | undefined;
  try {
    const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: OPTIONS });
    command = positionals[0];
    return await dispatch(values, positionals, io, stdin);
  } catch (e) {
    if (e instanceof UsageError || isParseArgsError(e)) {
      const hint = isCommand(command) ? `pbx-agent ${command} --help` : 'pbx-agent --help';
      io.err(`pbx-agent: ${(e as Error).message}\nRun ${hint} for usage.`);
      return EXIT.usage;
    }
    io.err(`pbx-agent: ${isCommand(command) ? `${command}: ` : ''}${describeError(e)}`);
    return EXIT.failure;
  }
}

function isParseArgsError(e: unknown): boolean {
  return typeof (e as { code?: unknown })?.code === 'string' && (e as { code: string }).code.startsWith('ERR_PARSE_ARGS');
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

async function dispatch(values: Values, positionals: string[], io: Io, stdin: NodeJS.ReadableStream): Promise<number> {
  const [command, ...rest] = positionals;
  if (values.version) {
    io.out(version());
    return EXIT.ok;
  }
  if (command === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !isCommand(topic)) throw new UsageError(`help: unknown command "${topic}"`);
    io.out(topic === undefined ? HELP : commandHelp(topic));
    return EXIT.ok;
  }
  if (command === undefined) {
    io.out(HELP);
    return values.help ? EXIT.ok : EXIT.usage;
  }
  if (!isCommand(command)) throw new UsageError(`unknown command "${command}"; see pbx-agent --help`);
  if (values.help) {
    io.out(commandHelp(command));
    return EXIT.ok;
  }
  const allowed: readonly string[] = COMMANDS[command].options;
  for (const name of Object.keys(values)) {
    if (!allowed.includes(name)) throw new UsageError(`${command} does not take --${name}`);
  }
  const one = (what: string) => {
    if (rest.length > 1) throw new UsageError(`${command}: expected at most one ${what}, got ${rest.length}`);
    return rest[0];
  };
  if (values.revision !== undefined && !REVISION_PATTERN.test(values.revision)) {
    throw new UsageError(`--revision: expected 1 to 64 letters, digits, ".", "_", "+" or "-" (e.g. a commit or v1.4), got ${JSON.stringify(values.revision)}`);
  }
  const external = values['external-address'];
  if (external !== undefined) {
    if (!Ipv4.safeParse(external).success) throw new UsageError(`--external-address: expected an IPv4 address such as 203.0.113.10, got ${JSON.stringify(external)}`);
    // The rule pbx.yaml's external_address obeys: the flag stands in for it.
    const kind = nonPublicAddressKind(external);
    if (kind) {
      throw new UsageError(
        `--external-address ${external}: is ${kind} address; it must be the instance's public Elastic IP, otherwise phones outside the VPC get one-way audio`,
      );
    }
  }
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
      if (values['allow-mass-removal']) opts.allowMassRemoval = true;
      return command === 'plan' ? planCommand(opts, io) : applyCommand(opts, io);
    }
    case 'run':
      return runCommand(values.settings !== undefined ? { settingsFile: values.settings } : {}, io);
    case 'sync':
    case 'status': {
      const opts = { json: values.json ?? false, ...(values.settings !== undefined ? { settingsFile: values.settings } : {}) };
      return command === 'sync' ? syncCommand({ ...opts, allowMassRemoval: values['allow-mass-removal'] ?? false }, io) : statusCommand(opts, io);
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
  // A reader that goes away (`pbx-agent render ... | head`) is not an error: the rest of the
  // output is dropped and the command finishes what it is doing (an apply is never cut between
  // writing and verifying); `render --watch` stops.
  quietOnClosedOutput(process.stdout);
  quietOnClosedOutput(process.stderr);
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
