/**
 * What the reconcile pipeline needs from Asterisk, as a small interface of our own. The real
 * implementation is the AMI adapter (ami.ts); tests run the same adapter against a loopback fake.
 */
import type { AsteriskModule } from '../managed-files.js';
import type { DialplanEdit } from '../plan/dialplan.js';
import type { AmiClient, EndpointDetails, EndpointSummary } from './ami.js';
import type { LiveObjectStore } from './live-objects.js';
import { missingAmiRights, type MissingRight } from './rights.js';

export interface AsteriskControl {
  /** Reload one module; resolves when Asterisk answered (which proves nothing about the result). */
  reload(module: AsteriskModule, timeoutMs: number): Promise<void>;
  /** One live dialplan edit (plan/dialplan.ts); removing what is not there is not an error. */
  editDialplan(edit: DialplanEdit, timeoutMs: number): Promise<void>;
  showEndpoints(): Promise<EndpointSummary[]>;
  showEndpoint(name: string): Promise<EndpointDetails | null>;
  /** CLI command through AMI; resolves to the output lines. */
  command(text: string): Promise<string[]>;
  /** The stand-in the adapter returns for a secret read back from Asterisk. */
  secretFingerprint(secret: string): string;
  /** Rights the AMI user lacks for what the agent does (empty: all there). See rights.ts. */
  missingRights(): Promise<MissingRight[]>;
  /** The AMI user's name, for messages. */
  readonly username: string;
  /** Resolves once Asterisk has fully booted (reloads before that are only queued). */
  whenFullyBooted(timeoutMs: number): Promise<boolean>;
  /** Resolves true once the connection has dropped, come back, and Asterisk has fully booted again. */
  whenRestarted(timeoutMs: number): Promise<boolean>;
  /** PJSIP objects changed without a reload (live-objects.ts); absent when not configured. */
  readonly liveObjects?: LiveObjectStore;
}

export function amiControl(client: AmiClient, liveObjects?: LiveObjectStore): AsteriskControl {
  // A session keeps the classes it logged in with (manager.c copies them at login): rights found
  // complete stay so until the next connection. Missing ones are asked again each time.
  let rightsComplete = false;
  client.on('connected', () => {
    rightsComplete = false;
  });
  return {
    reload: async (module, timeoutMs) => {
      await client.reload(module, timeoutMs);
    },
    editDialplan: async (edit, timeoutMs) => {
      if (edit.kind === 'set') await client.dialplanSet(edit, { timeoutMs });
      else await client.dialplanRemove(edit, { timeoutMs });
    },
    showEndpoints: () => client.showEndpoints(),
    showEndpoint: (name) => client.showEndpoint(name),
    command: (text) => client.command(text),
    secretFingerprint: (secret) => client.secretFingerprint(secret),
    missingRights: async () => {
      if (rightsComplete) return [];
      const missing = await missingAmiRights(client, client.username);
      rightsComplete = missing.length === 0;
      return missing;
    },
    username: client.username,
    ...(liveObjects ? { liveObjects } : {}),
    whenRestarted: (timeoutMs) =>
      new Promise<boolean>((resolve) => {
        let dropped = false;
        const onDisconnected = () => {
          dropped = true;
        };
        const onEvent = (event: { event: string }) => {
          if (dropped && event.event === 'FullyBooted') done(true);
        };
        const onConnected = () => {
          if (dropped && client.fullyBooted) done(true);
        };
        const timer = setTimeout(() => done(false), timeoutMs);
        const done = (value: boolean) => {
          clearTimeout(timer);
          client.off('disconnected', onDisconnected);
          client.off('connected', onConnected);
          client.off('event', onEvent);
          resolve(value);
        };
        client.on('disconnected', onDisconnected);
        client.on('connected', onConnected);
        client.on('event', onEvent);
      }),
    whenFullyBooted: (timeoutMs) =>
      new Promise<boolean>((resolve) => {
        if (client.fullyBooted) return resolve(true);
        const onEvent = (event: { event: string }) => {
          if (event.event !== 'FullyBooted') return;
          done(true);
        };
        const timer = setTimeout(() => done(client.fullyBooted), timeoutMs);
        const done = (value: boolean) => {
          clearTimeout(timer);
          client.off('event', onEvent);
          resolve(value);
        };
        client.on('event', onEvent);
      }),
  };
}
