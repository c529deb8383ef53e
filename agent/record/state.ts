/**
 * record: the agent's memory between runs, in its state directory (mode 700, files 600).
 *
 *   state.json             what was applied, what is in flight, what failed, the last run
 *   last-known-good/       the managed files as they were before the change in flight
 *
 * `pending` is written before any managed file is touched and cleared only after verification, so
 * a crash or power loss between writing and verifying is finished by the next run.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { DirectoryFileStore } from '../apply/files.js';
import { allWritten } from '../apply/index.js';
import type { EventName } from '../log.js';
import type { AdvertisedAddress, DesiredTransport, ResolvedState } from '../model.js';
import type { AsteriskModule } from '../managed-files.js';
import type { LiveObjectsRecord } from '../plan/live-objects.js';

export interface RunRecord {
  at: string;
  status: ReconcileStatus;
  revision: string;
  durationMs: number;
  error?: string;
  /**
   * Why the run failed, as a stable code: the name of the log event that reported it
   * (source.unreachable, ami.unreachable, reload.busy, reconcile.rolled_back, ...). Shared by
   * the log, `status` and `--json`.
   */
  code?: EventName;
}

export type ReconcileStatus = 'applied' | 'unchanged' | 'invalid' | 'skipped' | 'refused' | 'rolled_back' | 'failed';

/**
 * What Asterisk was given, beyond the files: the network facts the cloud checks and `check`
 * compare with the instance, so that they never re-load the repo or read the rendered text.
 */
export interface AppliedNetwork {
  advertised: AdvertisedAddress;
  localNets: string[];
  transports: Array<{ protocol: DesiredTransport['protocol']; port: number }>;
  allowedNetworks?: string[];
  rtp: { portStart: number; portEnd: number };
}

export interface AgentState {
  applied?: { revision: string; commit?: string; fingerprint: string; at: string; files: Record<string, string>; network?: AppliedNetwork };
  /**
   * An Elastic IP to advertise instead of pbx.yaml's external_address (cloud.eip_policy: adopt),
   * asked for by the cloud checks and used by the next reconcile; dropped once pbx.yaml names
   * that address itself or says auto.
   */
  adopted?: { address: string; previous?: string; at: string };
  /** The source refused the newest commit (history rewrite, missing signature). */
  sourceRejected?: { commit?: string; reason: string; at: string };
  /** lastError: why the last run left it pending (absent: the agent stopped mid-run). */
  pending?: {
    revision: string;
    fingerprint: string;
    modules: AsteriskModule[];
    paths: string[];
    at: string;
    lastError?: string;
    /** The run sends live objects: if it stops midway, the next run's reload must drop them. */
    live?: boolean;
  };
  /**
   * The newest configuration was refused by the mass-removal guard (plan/guard.ts); cleared by
   * the next run that applies or finds nothing to change.
   */
  refused?: { revision: string; reason: string; fix: string; at: string };
  /** A desired state that failed verification: not retried until the config changes. */
  failed?: { revision: string; fingerprint: string; reason: string; at: string };
  /**
   * Extensions Asterisk has as live objects rather than from pjsip.conf (plan/live-objects.ts),
   * until the daemon folds them with a res_pjsip reload.
   */
  live?: LiveObjectsRecord;
  /** Changes that need an Asterisk restart to take effect (transport bind, protocol, TLS). */
  restartPending?: { reasons: string[]; since: string };
  lastRun?: RunRecord;
  consecutiveFailures: number;
}

const STATE_FILE = 'state.json';
const LKG_DIR = 'last-known-good';
const LKG_MANIFEST = 'manifest.json';

export class StateStore {
  private readonly store: DirectoryFileStore;

  constructor(readonly dir: string) {
    this.store = new DirectoryFileStore(dir, { mode: 0o600, dirMode: 0o700 });
  }

  async read(): Promise<AgentState> {
    const text = await this.store.read(STATE_FILE);
    if (text === undefined) return { consecutiveFailures: 0 };
    try {
      const parsed = JSON.parse(text) as Partial<AgentState>;
      return { ...parsed, consecutiveFailures: parsed.consecutiveFailures ?? 0 };
    } catch {
      // A state file that does not parse is treated as absent: the worst outcome is one
      // unnecessary verification, never a skipped one (pending is re-derived from disk state).
      return { consecutiveFailures: 0 };
    }
  }

  /** Removes temp files a killed writer left here (they may hold last-known-good credentials). */
  async removeLeftovers(): Promise<string[]> {
    return [...(await this.store.removeLeftovers('.')), ...(await this.store.removeLeftovers(LKG_DIR))];
  }

  async write(state: AgentState): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.store.writeAtomic(STATE_FILE, JSON.stringify(state, null, 2) + '\n');
  }

  /** Keeps `files` (path → text, or undefined for "did not exist") as the last-known-good set. */
  async saveLastKnownGood(files: ReadonlyMap<string, string | undefined>): Promise<void> {
    const manifest: Record<string, boolean> = {};
    const writes: Array<Promise<void>> = [];
    for (const [rel, text] of files) {
      manifest[rel] = text !== undefined;
      if (text !== undefined) writes.push(this.store.writeAtomic(path.join(LKG_DIR, rel), text));
    }
    // Side by side, manifest included: the set is read only through a pending change, and the
    // caller writes that only once every file here is on disk.
    writes.push(this.store.writeAtomic(path.join(LKG_DIR, LKG_MANIFEST), JSON.stringify(manifest, null, 2) + '\n'));
    await allWritten(writes);
  }

  async loadLastKnownGood(): Promise<Map<string, string | undefined>> {
    const out = new Map<string, string | undefined>();
    const manifestText = await this.store.read(path.join(LKG_DIR, LKG_MANIFEST));
    if (manifestText === undefined) return out;
    const manifest = JSON.parse(manifestText) as Record<string, boolean>;
    for (const [rel, present] of Object.entries(manifest)) {
      out.set(rel, present ? await this.store.read(path.join(LKG_DIR, rel)) : undefined);
    }
    return out;
  }
}

/** The network facts of a resolved state, as the applied record keeps them. */
export function appliedNetworkOf(state: ResolvedState): AppliedNetwork {
  return {
    advertised: state.advertised,
    localNets: [...state.network.localNets],
    transports: state.network.transports.map((t) => ({ protocol: t.protocol, port: t.port })),
    ...(state.network.allowedNetworks ? { allowedNetworks: [...state.network.allowedNetworks] } : {}),
    rtp: { portStart: state.rtp.portStart, portEnd: state.rtp.portEnd },
  };
}

/**
 * A run that failed before it could reconcile (the config repo or Asterisk out of reach): it
 * counts like any other failed run, so that `status` turns unhealthy.
 */
export async function recordFailedRun(store: StateStore, run: { code: EventName; error: string; at: Date }, extra: Partial<AgentState> = {}): Promise<void> {
  const state = await store.read();
  const lastRun: RunRecord = { at: run.at.toISOString(), status: 'failed', revision: state.applied?.revision ?? 'none', durationMs: 0, error: run.error, code: run.code };
  await store.write({ ...state, ...extra, lastRun, consecutiveFailures: state.consecutiveFailures + 1 });
}
