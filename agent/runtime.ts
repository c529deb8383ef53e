/**
 * Wiring from settings to the real outside systems: the AMI connection, the Asterisk config
 * directory, the state directory, host secrets. Shared by `pbx-agent apply` and the daemon.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AgentSettingsData } from '../schemas/agent-settings.js';
import { DirectoryFileStore } from './apply/files.js';
import { AmiClient, AmiError } from './asterisk/ami.js';
import { amiControl, type AsteriskControl } from './asterisk/control.js';
import { AriClient } from './asterisk/ari.js';
import { amiAriLiveObjects, type LiveObjectStore } from './asterisk/live-objects.js';
import { readManagerExposure } from './asterisk/manager-conf.js';
import { logEvent, type Logger } from './log.js';
import type { ReconcileDeps } from './reconcile.js';
import { StateStore } from './record/state.js';
import { CloudMonitor } from './cloud/index.js';
import { DirectorySecretStore, readSecretFile, type HostFacts } from './resolve/index.js';
import { GitSource } from './source/git.js';

export class StartupError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** The numeric id of a group from /etc/group (Node has no getgrnam). */
export async function groupId(name: string, groupFile = '/etc/group'): Promise<number> {
  const text = await readFile(groupFile, 'utf8').catch(() => '');
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new StartupError('settings.invalid', `group "${name}" (asterisk.file_group) does not exist on this host`);
}

/** The AMI client for the settings: the one place it is built (the daemon and the CLI). */
export function amiClientFor(settings: AgentSettingsData, secret: string, options: { keepaliveMs?: number } = {}): AmiClient {
  const ami = settings.asterisk.ami;
  return new AmiClient({
    host: ami.host,
    port: ami.port,
    username: ami.username,
    secret,
    connectTimeoutMs: ami.connect_timeout_seconds * 1000,
    actionTimeoutMs: ami.action_timeout_seconds * 1000,
    ...(options.keepaliveMs ? { keepaliveMs: options.keepaliveMs } : {}),
  });
}

/** Logs ami.exposed when manager.conf lets AMI listen beyond loopback (the daemon and the CLI). */
export async function warnIfAmiExposed(configDir: string, log: Logger): Promise<void> {
  const exposure = await readManagerExposure(configDir);
  if (!exposure?.exposed) return;
  logEvent(log, 'warn', 'ami.exposed', { bindaddr: exposure.bindaddr, port: exposure.port },
    `AMI listens on ${exposure.bindaddr}:${exposure.port}; set bindaddr = 127.0.0.1 in manager.conf [general] so that only this host can reach it`);
}

/**
 * The daemon's AMI connection: connected in the background and kept up. The client itself
 * reconnects after a drop; a first connection that fails is retried every 10 s, each failure
 * logged (ami.unreachable / ami.auth_failed) and kept as `lastError` for the runs that cannot
 * go ahead meanwhile.
 */
export class AmiConnection {
  readonly client: AmiClient;
  readonly control: AsteriskControl;
  lastError: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private first: Promise<void> | undefined;
  private onConnected: () => void = () => undefined;

  constructor(settings: AgentSettingsData, secret: string, private readonly log: Logger, ariPassword?: string) {
    this.client = amiClientFor(settings, secret, { keepaliveMs: 30_000 });
    this.control = amiControl(this.client, liveObjectStoreFor(settings, this.client, ariPassword));
  }

  /** Starts connecting; `onConnected` runs after a connection that followed a failed attempt. */
  keepConnecting(onConnected: () => void): void {
    this.onConnected = onConnected;
    this.first = this.attempt(false);
  }

  /** Resolves once the first attempt has succeeded or failed. */
  async firstAttempt(): Promise<void> {
    await this.first;
  }

  private async attempt(retry: boolean): Promise<void> {
    if (this.closed) return;
    try {
      await this.client.connect();
      this.lastError = undefined;
      if (retry) this.onConnected();
    } catch (e) {
      const code = (e as { code?: string }).code === 'ami.auth_failed' ? 'ami.auth_failed' : 'ami.unreachable';
      this.lastError = (e as Error).message;
      logEvent(this.log, 'error', code, {}, `${(e as Error).message}; retrying in 10 s`);
      this.timer = setTimeout(() => void this.attempt(true), 10_000);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.control.liveObjects?.close();
    await this.client.close().catch(() => undefined);
  }
}

/**
 * The ARI password when live objects are enabled (asterisk.live_objects), from its root-only file;
 * undefined when they are not.
 */
export async function readAriPassword(settings: AgentSettingsData): Promise<string | undefined> {
  const live = settings.asterisk.live_objects;
  if (!live.enabled) return undefined;
  const secret = await readSecretFile(live.secret_file);
  if ('problem' in secret) throw new StartupError('ari.secret', `ARI password (asterisk.live_objects.secret_file): ${secret.problem}`);
  return secret.value;
}

/** Live objects over this AMI client, with ARI when enabled (see asterisk/live-objects.ts). */
export function liveObjectStoreFor(settings: AgentSettingsData, client: AmiClient, ariPassword: string | undefined): LiveObjectStore {
  const live = settings.asterisk.live_objects;
  const ari = ariPassword === undefined
    ? undefined
    : new AriClient({ url: live.ari_url, username: live.username, password: ariPassword, timeoutMs: settings.asterisk.ami.action_timeout_seconds * 1000 });
  return amiAriLiveObjects(client, ari);
}

/** Connects and logs in to AMI, with the secret from its root-only file (the CLI's commands). */
export async function connectAsterisk(settings: AgentSettingsData, log: Logger): Promise<{ client: AmiClient; control: AsteriskControl }> {
  const ami = settings.asterisk.ami;
  await warnIfAmiExposed(settings.asterisk.config_dir, log);
  const secret = await readSecretFile(ami.secret_file);
  if ('problem' in secret) throw new StartupError('ami.secret', `AMI secret: ${secret.problem}`);
  const ariPassword = await readAriPassword(settings);
  const client = amiClientFor(settings, secret.value);
  try {
    await client.connect();
  } catch (e) {
    await client.close().catch(() => undefined);
    if (e instanceof AmiError && e.code === 'ami.auth_failed') {
      logEvent(log, 'error', 'ami.auth_failed', { host: ami.host, port: ami.port, username: ami.username }, e.message);
      throw new StartupError(e.code, `${e.message}; check the [${ami.username}] user in manager.conf and ${ami.secret_file}`);
    }
    logEvent(log, 'error', 'ami.unreachable', { host: ami.host, port: ami.port }, (e as Error).message);
    throw new StartupError('ami.unreachable', (e as Error).message);
  }
  return { client, control: amiControl(client, liveObjectStoreFor(settings, client, ariPassword)) };
}

/** external_address: auto, answered from instance metadata and the EC2 API (lazily). */
export function cloudElasticIp(settings: AgentSettingsData, log: Logger): HostFacts['elasticIp'] {
  let monitor: CloudMonitor | undefined;
  return async () => {
    monitor ??= new CloudMonitor({ settings: settings.cloud }, log);
    return monitor.elasticIp();
  };
}

/** The config repo source of the settings (`source` must be set). */
export function gitSourceFrom(settings: AgentSettingsData): GitSource {
  const src = settings.source;
  if (!src) throw new StartupError('settings.invalid', 'the settings have no source.url');
  return new GitSource({
    url: src.url,
    branch: src.branch,
    ...(src.ref ? { ref: src.ref } : {}),
    ...(src.ssh_key_file ? { sshKeyFile: src.ssh_key_file } : {}),
    knownHostsFile: src.known_hosts_file,
    allowHistoryRewrite: src.allow_history_rewrite,
    ...(src.allowed_signers_file ? { allowedSignersFile: src.allowed_signers_file } : {}),
    timeoutMs: src.timeout_seconds * 1000,
    workDir: path.join(settings.state_dir, 'repo'),
    sshControlDir: path.join(settings.state_dir, 'ssh'),
  });
}

export async function reconcileDeps(
  settings: AgentSettingsData,
  asterisk: AsteriskControl,
  log: Logger,
  host: Partial<HostFacts> = {},
): Promise<ReconcileDeps> {
  const gid = settings.asterisk.file_group ? await groupId(settings.asterisk.file_group) : undefined;
  return {
    asterisk,
    files: new DirectoryFileStore(settings.asterisk.config_dir, gid === undefined ? {} : { gid }),
    state: new StateStore(settings.state_dir),
    host: {
      secrets: host.secrets ?? new DirectorySecretStore(settings.secrets_dir),
      elasticIp: host.elasticIp ?? cloudElasticIp(settings, log),
      ...(host.adoptedAddress ? { adoptedAddress: host.adoptedAddress } : {}),
    },
    log,
    now: () => new Date(),
    options: {
      reloadTimeoutMs: settings.asterisk.reload_timeout_seconds * 1000,
      verifyDetailLimit: settings.asterisk.verify_detail_limit,
      restartPolicy: settings.asterisk.restart_policy,
      ...(settings.asterisk.live_objects.enabled ? { liveObjectsLimit: settings.asterisk.live_objects.max_extensions } : {}),
    },
  };
}
