/**
 * Structured logs: one JSON object per line on stdout (journald on the host), each with a stable
 * dotted `event` name documented in the README. Secrets are redacted by path as a second line of
 * defence; the code does not put them in log fields in the first place.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Every event name the agent logs. Operators alert on these; renaming one is a breaking change. */
export const EVENTS = [
  'reconcile.finished',
  'reconcile.invalid',
  'reconcile.skipped',
  'reconcile.rolled_back',
  'reconcile.failed',
  'reconcile.resumed',
  'reconcile.refused',
  'reconcile.removal_acknowledged',
  'plan.warning',
  'apply.leftovers_removed',
  'reload.hung',
  'reload.busy',
  'live.skipped',
  'live.unavailable',
  'live.fell_back',
  'live.folded',
  'live.fold_failed',
  'verify.mismatch',
  'rollback.failed',
  'asterisk.restart_required',
  'asterisk.restart_deferred',
  'asterisk.restarted',
  'asterisk.restart_failed',
  'ami.auth_failed',
  'ami.unreachable',
  'ami.exposed',
  'ami.permission_denied',
  'source.unreachable',
  'source.rejected',
  'daemon.started',
  'daemon.sighup',
  'daemon.stopping',
  'daemon.stopped',
  'daemon.notify_failed',
  'sync.backoff',
  'webhook.push',
  'webhook.rejected',
  'drift.file',
  'drift.asterisk',
  'drift.resolved',
  'drift.check_failed',
  // Cloud checks (agent/cloud); what each means and what to do: docs/aws-setup.md.
  'cloud.unavailable',
  'cloud.available',
  'cloud.access_denied',
  'cloud.error',
  'drift.eip',
  'drift.security_group',
  'drift.local_net',
] as const;
export type EventName = (typeof EVENTS)[number];

const REDACT = ['password', 'secret', 'md5_cred', '*.password', '*.secret', '*.md5_cred', '*.*.password', '*.*.secret'];

export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  const options = {
    level,
    base: { app: 'pbx-agent' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination as pino.DestinationStream) : pino(options);
}

/** Logs one event: `{ event, ...fields, msg }`. */
export function logEvent(
  log: Logger,
  level: 'debug' | 'info' | 'warn' | 'error' | 'fatal',
  event: EventName,
  fields: Record<string, unknown>,
  message: string,
): void {
  log[level]({ event, ...fields }, message);
}
