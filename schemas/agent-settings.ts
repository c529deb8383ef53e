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

/** An http:// URL on this host: the only place the agent sends ARI's Basic-auth password. */
function loopbackHttp(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}

/**
 * Extensions changed live as dynamic PJSIP objects instead of a res_pjsip reload (README, Large
 * PBXs). Needs sorcery.conf to map endpoint, auth and aor to `astdb,pbx-agent-live` before
 * pjsip.conf, which takes effect when Asterisk starts, and ARI on loopback; bootstrap.sh sets
 * both up. Without them every change reloads res_pjsip as before.
 */
export const LiveObjectsSettings = z
  .strictObject({
    enabled: z.boolean().default(false).describe('Apply a change of a few extensions as live objects (astdb + ARI) when Asterisk has the mapping.'),
    ari_url: z
      .string()
      .url({ error: 'expected a URL such as http://127.0.0.1:8088' })
      .refine(loopbackHttp, { error: "expected http:// on loopback (127.0.0.1, ::1 or localhost): ARI's password goes over it in clear text" })
      .default('http://127.0.0.1:8088')
      .describe("Asterisk's HTTP server with ARI (http.conf, ari.conf), on loopback."),
    username: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { error: 'expected an ari.conf user name' }).default('pbx-agent'),
    secret_file: AbsolutePath.default('/etc/pbx-agent/ari.secret').describe('File holding the ARI password (one line, not readable by other users).'),
    max_extensions: z.number().int().min(1).max(1000).default(20).describe('A change of more extensions than this reloads res_pjsip instead.'),
    fold_after_seconds: Seconds(30, 86400).describe(
      'Once no run has come for this long, res_pjsip is reloaded so that pjsip.conf holds everything and the live objects are dropped.',
    ),
  })
  .describe('Extensions changed live, without a res_pjsip reload.');

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
    live_objects: LiveObjectsSettings.prefault({}),
  })
  .describe('The Asterisk the agent manages.');

/** A five-field cron expression as node-cron takes it, e.g. "* * * * *" (every minute). */
const Cron = z.string().regex(/^\S+( \S+){4,5}$/, { error: 'expected a cron expression such as "*/5 * * * *"' });

export const SourceSettings = z
  .strictObject({
    url: z
      .string({ error: 'expected a git URL (ssh or https) or an absolute path' })
      .min(1)
      .describe('The config repo: git@host:org/repo.git, https://host/org/repo.git, or a local path (tries and tests).'),
    branch: z.string().regex(/^[A-Za-z0-9._/-]{1,200}$/, { error: 'expected a branch name' }).default('main'),
    ref: z
      .string()
      .regex(/^[A-Za-z0-9._/-]{1,200}$/, { error: 'expected a tag or commit' })
      .optional()
      .describe('Pin a tag or commit instead of following the branch.'),
    ssh_key_file: AbsolutePath.optional().describe('Deploy key for ssh URLs.'),
    known_hosts_file: AbsolutePath.default('/etc/pbx-agent/known_hosts').describe('Host keys the agent trusts (strict checking).'),
    allow_history_rewrite: z.boolean().default(false).describe('Apply a commit that is not a descendant of the last applied one.'),
    allowed_signers_file: AbsolutePath.optional().describe(
      'When set, only commits with an SSH signature by a key in this file (git gpg.ssh.allowedSignersFile format) are applied.',
    ),
    timeout_seconds: Seconds(60, 3600).describe('Limit for one fetch or clone.'),
  })
  .describe('Where the config repo comes from.');

export const ScheduleSettings = z
  .strictObject({
    sync: Cron.default('* * * * *').describe('How often to fetch and reconcile.'),
    drift: Cron.default('*/5 * * * *').describe('How often to compare live Asterisk state with the desired state.'),
    cloud: Cron.default('*/10 * * * *').describe('How often to run the cloud checks (Elastic IP, security groups).'),
    backoff_base_seconds: z.number().positive().max(3600).default(10).describe('After a failed run, scheduled runs wait this long, doubling per failure.'),
    backoff_max_seconds: z.number().positive().max(86400).default(600).describe('The longest wait after failed runs.'),
  })
  .describe('Scheduled work (node-cron expressions).');

export const WebhookSettings = z
  .strictObject({
    listen: z
      .string()
      .regex(/^[0-9a-fA-F.:[\]]+:\d{1,5}$/, { error: 'expected ADDRESS:PORT such as 0.0.0.0:9090' })
      .describe('Where the push webhook listens.'),
    secret_file: AbsolutePath.default('/etc/pbx-agent/webhook.secret').describe('Shared secret of the webhook (GitHub/Gitea HMAC, GitLab token).'),
    max_body_bytes: z.number().int().min(1024).max(25 * 1024 * 1024).default(1024 * 1024),
  })
  .describe('Push webhook: a sync starts within seconds of a push.');

export const DriftSettings = z
  .strictObject({
    file_policy: z.enum(['alert', 'restore'], { error: 'expected alert or restore' }).default('alert')
      .describe('A managed file edited by hand: alert only, or also put the managed version back.'),
    reminder_minutes: z.number().int().min(1).max(10080).optional()
      .describe('How often a drift of any kind that persists is logged again (default: cloud.reminder_minutes, its earlier name, or 60).'),
  })
  .describe('What to do about drift.');

export const CloudSettings = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Run the cloud checks; off the EC2 they log cloud.unavailable once and stop.'),
    eip_policy: z.enum(['alert', 'adopt'], { error: 'expected alert or adopt' }).default('alert')
      .describe('external_address differs from the Elastic IP: alert, or adopt (re-render with the Elastic IP and reload).'),
    imds_endpoint: z.string().url().optional()
      .describe('Instance metadata endpoint override; default AWS_EC2_METADATA_SERVICE_ENDPOINT if set, else http://169.254.169.254.'),
    imds_timeout_ms: z.number().int().min(100).max(30_000).default(1000)
      .describe('Per instance metadata request; a connection that gets no answer within it counts as a slow IMDS, not as "not on EC2".'),
    ec2_endpoint: z.string().url().optional().describe('EC2 API endpoint override.'),
    reminder_minutes: z.number().int().min(1).max(10080).default(60).describe('How often a drift that persists is logged again.'),
  })
  .describe('Checks of the Elastic IP and security groups through IMDSv2 and the EC2 API.');

export const AgentSettings = z
  .strictObject({
    state_dir: AbsolutePath.default('/var/lib/pbx-agent').describe('State file, last-known-good copies and the config repo clone.'),
    secrets_dir: AbsolutePath.default('/etc/pbx-agent/secrets').describe('Named secrets referenced from the YAML.'),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    asterisk: AsteriskSettings.prefault({}),
    source: SourceSettings.optional().describe('Needed by the daemon and `sync`; `apply DIR` works without it.'),
    schedule: ScheduleSettings.prefault({}),
    webhook: WebhookSettings.optional(),
    drift: DriftSettings.prefault({}),
    cloud: CloudSettings.prefault({}),
    unhealthy_after_failures: z.number().int().min(1).max(1000).default(3).describe('`status` says unhealthy after this many failed runs in a row.'),
  })
  .describe('pbx-agent settings (/etc/pbx-agent/agent.yaml).');

export type AgentSettingsData = z.output<typeof AgentSettings>;
