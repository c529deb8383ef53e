/**
 * A PBX host in a temp directory for tests: an /etc/asterisk stand-in with the operator's own
 * pjsip.conf / extensions.conf / voicemail.conf / confbridge.conf pulling in the agent's files, a FakeAsterisk
 * serving AMI on 127.0.0.1, the agent's settings file, AMI secret and state directory.
 */
import { chmod, mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { AmiClient } from '../../agent/asterisk/ami.js';
import { amiControl } from '../../agent/asterisk/control.js';
import { AriClient } from '../../agent/asterisk/ari.js';
import { amiAriLiveObjects } from '../../agent/asterisk/live-objects.js';
import { createLogger, type Logger } from '../../agent/log.js';
import type { ReconcileDeps } from '../../agent/reconcile.js';
import { DirectoryFileStore } from '../../agent/apply/files.js';
import { StateStore } from '../../agent/record/state.js';
import { DirectorySecretStore } from '../../agent/resolve/index.js';
import { FakeAsterisk } from './ami-server.js';
import { tempDir } from './config-repo.js';

export const AMI_USER = 'pbx-agent';
export const AMI_SECRET = 'ami-Secret-for-tests-7Qz';
export const ARI_PASSWORD = 'ari-Secret-for-tests-3Kp';

/** The operator's own files, as left by the bootstrap: they include the agent's. */
export const OPERATOR_PJSIP = `; hand-maintained\n#tryinclude pbx-agent/pjsip.conf\n`;
const OPERATOR_EXTENSIONS = `[general]\nstatic=yes\nwriteprotect=yes\n\n#tryinclude pbx-agent/extensions.conf\n`;
const OPERATOR_VOICEMAIL = `[general]\nformat=wav49|wav\n\n#tryinclude pbx-agent/voicemail.conf\n`;
/** Debian's confbridge.conf, shortened, with the line the bootstrap adds. */
const OPERATOR_CONFBRIDGE = `[general]\n\n[default_user]\ntype=user\n\n[default_bridge]\ntype=bridge\n\n#tryinclude pbx-agent/confbridge.conf\n`;
const STOCK_RTP = `[general]\nrtpstart=10000\nrtpend=20000\n`;

export interface PbxHost {
  root: string;
  configDir: string;
  stateDir: string;
  settingsFile: string;
  asterisk: FakeAsterisk;
  client: AmiClient;
  /** Parsed JSON log lines the agent wrote. */
  events: Array<Record<string, unknown> & { event?: string }>;
  log: Logger;
  deps(overrides?: Partial<ReconcileDeps['options']>): ReconcileDeps;
  stop(): Promise<void>;
}

/** The AMI user's classes as the bootstrap writes them (bootstrap.sh, manager.d/pbx-agent.conf). */
export const AMI_RIGHTS = { read: ['system'], write: ['system', 'config', 'command'] };

export async function startPbxHost(
  options: {
    operatorPjsip?: string;
    unknownOptions?: string[];
    unknownConfbridgeOptions?: string[];
    amiRights?: { read: string[]; write: string[] };
    /**
     * Live objects as bootstrap.sh sets them up: Asterisk started with the sorcery.conf mapping
     * (`mapping`, default true) and ARI, and the agent's settings enabling them.
     */
    liveObjects?: { mapping?: boolean; foldAfterSeconds?: number };
  } = {},
): Promise<PbxHost> {
  const root = await tempDir('pbx-agent-host-');
  const configDir = path.join(root, 'etc/asterisk');
  const stateDir = path.join(root, 'var/lib/pbx-agent');
  const agentDir = path.join(root, 'etc/pbx-agent');
  await mkdir(configDir, { recursive: true });
  await mkdir(path.join(agentDir, 'secrets'), { recursive: true });
  await writeFile(path.join(configDir, 'pjsip.conf'), options.operatorPjsip ?? OPERATOR_PJSIP);
  await writeFile(path.join(configDir, 'extensions.conf'), OPERATOR_EXTENSIONS);
  await writeFile(path.join(configDir, 'voicemail.conf'), OPERATOR_VOICEMAIL);
  await writeFile(path.join(configDir, 'confbridge.conf'), OPERATOR_CONFBRIDGE);
  // As the bootstrap leaves it: the stock rtp.conf kept aside, rtp.conf a symlink to the agent's.
  await writeFile(path.join(configDir, 'rtp.conf.dpkg-dist'), STOCK_RTP);
  await symlink('pbx-agent/rtp.conf', path.join(configDir, 'rtp.conf'));
  const rights = options.amiRights ?? AMI_RIGHTS;
  await writeFile(path.join(configDir, 'manager.conf'), `[general]\nenabled = yes\nbindaddr = 127.0.0.1\nport = 5038\n\n[${AMI_USER}]\nsecret = ${AMI_SECRET}\nread = ${rights.read.join(',')}\nwrite = ${rights.write.join(',')}\n`);
  const secretFile = path.join(agentDir, 'ami.secret');
  await writeFile(secretFile, `${AMI_SECRET}\n`);
  await chmod(secretFile, 0o600);

  const asterisk = new FakeAsterisk({
    configDir,
    users: { [AMI_USER]: AMI_SECRET },
    permissions: { [AMI_USER]: rights },
    unknownOptions: options.unknownOptions ?? [],
    unknownConfbridgeOptions: options.unknownConfbridgeOptions ?? [],
    ...(options.liveObjects ? { liveObjects: options.liveObjects.mapping ?? true, ari: { username: AMI_USER, password: ARI_PASSWORD } } : {}),
  });
  const port = await asterisk.start();

  const settingsFile = path.join(agentDir, 'agent.yaml');
  await writeFile(
    settingsFile,
    [
      `state_dir: ${stateDir}`,
      `secrets_dir: ${path.join(agentDir, 'secrets')}`,
      'asterisk:',
      `  config_dir: ${configDir}`,
      '  reload_timeout_seconds: 2',
      '  ami:',
      `    port: ${port}`,
      `    username: ${AMI_USER}`,
      `    secret_file: ${secretFile}`,
      '    connect_timeout_seconds: 2',
      '    action_timeout_seconds: 5',
      ...(options.liveObjects
        ? ['  live_objects:', '    enabled: true', `    ari_url: ${asterisk.ariUrl}`, `    username: ${AMI_USER}`, `    secret_file: ${path.join(agentDir, 'ari.secret')}`, ...(options.liveObjects.foldAfterSeconds ? [`    fold_after_seconds: ${options.liveObjects.foldAfterSeconds}`] : [])]
        : []),
      '',
    ].join('\n'),
  );
  await writeFile(path.join(agentDir, 'ari.secret'), `${ARI_PASSWORD}\n`, { mode: 0o600 });

  const client = new AmiClient({
    host: '127.0.0.1',
    port,
    username: AMI_USER,
    secret: AMI_SECRET,
    connectTimeoutMs: 2000,
    actionTimeoutMs: 5000,
    reconnectInitialMs: 50,
    reconnectMaxMs: 200,
  });
  await client.connect();
  // One control per connection, as the daemon and the CLI have it (it remembers the rights check).
  const store = amiAriLiveObjects(
    client,
    options.liveObjects ? new AriClient({ url: asterisk.ariUrl, username: AMI_USER, password: ARI_PASSWORD, timeoutMs: 5000 }) : undefined,
  );
  const control = amiControl(client, store);

  const events: PbxHost['events'] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) events.push(JSON.parse(line));
      cb();
    },
  });
  const log = createLogger('debug', sink);

  return {
    root,
    configDir,
    stateDir,
    settingsFile,
    asterisk,
    client,
    events,
    log,
    deps: (overrides = {}) => ({
      asterisk: control,
      files: new DirectoryFileStore(configDir),
      state: new StateStore(stateDir),
      host: {
        secrets: new DirectorySecretStore(path.join(agentDir, 'secrets')),
        elasticIp: async () => ({ problem: 'not on EC2' }),
      },
      log,
      now: () => new Date(),
      options: { reloadTimeoutMs: 1000, verifyDetailLimit: 200, restartPolicy: 'never', ...(options.liveObjects ? { liveObjectsLimit: 20 } : {}), ...overrides },
    }),
    stop: async () => {
      store.close();
      await client.close();
      await asterisk.stop();
    },
  };
}
