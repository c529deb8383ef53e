/**
 * The agent's own settings: /etc/pbx-agent/agent.yaml on the host (never in the config repo).
 * Every field has a default that fits the reference deployment (Ubuntu 24.04, asterisk.service).
 */
import { z } from 'zod';

const AbsolutePath = z
  .string({ error: 'expected an absolute path' })
  .regex(/^\/[^\u0000-\u001f]*$/, { error: 'expected an absolute path such as /var/lib/pbx-agent' });

const Seconds = (dflt: number, max: number) =>
  z.number({ error: 'expected a number of seconds' }).positive({ error: 'expected more than 0 seconds' }).max(max).default(dflt);

export const AmiSettings = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1').describe('Where Asterisk Manager listens; keep it on loopback.'),
    port: z.number().int().min(1).max(65535).default(5038),
    username: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'expected a manager.conf user name' }).default('pbx-agent'),
    secret_file: AbsolutePath.default('/etc/pbx-agent/ami.secret').describe(
      'File holding the AMI secret (one line, not readable by other users).',
    ),
    connect_timeout_seconds: Seconds(5, 120),
    action_timeout_seconds: Seconds(10, 600),
  })
  .describe('How the agent reaches Asterisk Manager (AMI).');

export const AsteriskSettings = z
  .strictObject({
    config_dir: AbsolutePath.default('/etc/asterisk'),
    file_group: z
      .string()
      .regex(/^[a-z_][a-z0-9_-]{0,31}$/, { error: 'expected a group name such as asterisk' })
      .optional()
      .describe('Group given to managed files so that Asterisk can read them (mode 640); e.g. asterisk.'),
    reload_timeout_seconds: Seconds(30, 600).describe('A module reload taking longer is reported as hung.'),
    restart_policy: z
      .enum(['never', 'when_idle'], { error: 'expected never or when_idle' })
      .default('never')
      .describe('When a change needs a restart (transport bind/protocol/TLS): never (report it), or when_idle (no calls up).'),
    verify_detail_limit: z
      .number()
      .int()
      .min(1)
      .max(100000)
      .default(200)
      .describe('At most this many added endpoints are read back one by one; changed ones always are.'),
    ami: AmiSettings.prefault({}),
  })
  .describe('The Asterisk the agent manages.');

export const AgentSettings = z
  .strictObject({
    state_dir: AbsolutePath.default('/var/lib/pbx-agent').describe('State file and last-known-good copies.'),
    secrets_dir: AbsolutePath.default('/etc/pbx-agent/secrets').describe('Named secrets referenced from the YAML.'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    asterisk: AsteriskSettings.prefault({}),
  })
  .describe('pbx-agent settings (/etc/pbx-agent/agent.yaml).');

export type AgentSettingsData = z.output<typeof AgentSettings>;
