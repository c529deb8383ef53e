/**
 * resolve: fill in what comes from the host. Named secrets are read and turned into md5
 * digests, plain passwords likewise, and `external_address: auto` becomes the Elastic IP.
 * After this stage no password exists in the state, only digests.
 */
import { createHash } from 'node:crypto';
import { fieldPath, type ConfigIssue } from '../load/issues.js';
import { passwordWeakness } from '../load/password-policy.js';
import type { AdvertisedAddress, DesiredConference, DesiredExtension, DesiredState, Locate, PinRef, ResolvedState, SourceRef } from '../model.js';
import type { SecretStore } from './secrets.js';

export { DirectorySecretStore, DEFAULT_SECRETS_DIR, readSecretFile, type SecretStore } from './secrets.js';

export interface HostFacts {
  secrets: SecretStore;
  /**
   * The Elastic IP associated with this instance, for `external_address: auto`, or why it
   * cannot be known (not on EC2, no Elastic IP associated, ...).
   */
  elasticIp(): Promise<{ address: string } | { problem: string }>;
  /**
   * An Elastic IP adopted in place of an explicit external_address that no longer matches it
   * (cloud.eip_policy: adopt); undefined when nothing is adopted.
   */
  adoptedAddress?(): string | undefined;
}

/**
 * md5_cred as res_pjsip checks it: md5("username:realm:password"), lowercase hex
 * (docs.asterisk.org, res_pjsip auth `md5_cred`).
 */
export function md5Credential(username: string, realm: string, password: string): string {
  return createHash('md5').update(`${username}:${realm}:${password}`).digest('hex');
}

function issueFor(ext: DesiredExtension, locate: Locate, field: string, message: string): ConfigIssue {
  const pos = locate(ext.source);
  return { severity: 'error', file: ext.source.file, line: pos.line, column: pos.column, field, message };
}

/** An issue at a field of a conference room: `conferences[0].pin`. */
function roomIssue(room: { source: SourceRef }, locate: Locate, field: string, message: string): ConfigIssue {
  const path = [...room.source.path, field];
  const pos = locate({ file: room.source.file, path });
  return { severity: 'error', file: room.source.file, line: pos.line, column: pos.column, field: fieldPath(path), message };
}

/**
 * ConfBridge compares a PIN with the digits typed on the keypad (app_confbridge.c conf_get_pin,
 * up to MAX_PIN 80); fewer than 4 digits are guessed in minutes by anyone who can dial the room.
 */
const PIN_PATTERN = /^[0-9]{4,12}$/;

/** Reads the digits of one PIN; a problem becomes an issue at the room. */
async function readPin(
  room: DesiredConference,
  field: 'pin' | 'moderator_pin',
  ref: PinRef,
  host: HostFacts,
  locate: Locate,
  issues: ConfigIssue[],
): Promise<Required<PinRef> | undefined> {
  const what = `secret "${ref.secret}" (${field === 'pin' ? 'the PIN' : 'the moderator PIN'} of conference room ${room.number})`;
  const got = await host.secrets.read(ref.secret);
  if ('problem' in got) {
    issues.push(roomIssue(room, locate, field, `${what}: ${got.problem}`));
    return undefined;
  }
  // Never the value itself in a message: it is the PIN.
  if (!PIN_PATTERN.test(got.value)) {
    issues.push(roomIssue(room, locate, field, `${what} must hold 4 to 12 digits 0-9 on one line, the digits callers type on the keypad`));
    return undefined;
  }
  return { secret: ref.secret, digits: got.value };
}

export async function resolveDesiredState(
  state: DesiredState,
  host: HostFacts,
  locate: Locate,
): Promise<{ resolved?: ResolvedState; issues: ConfigIssue[] }> {
  const issues: ConfigIssue[] = [];

  const configured = state.network.externalAddress;
  let externalAddress = configured;
  let source: AdvertisedAddress['source'] = 'config';
  const adopted = configured === 'auto' ? undefined : host.adoptedAddress?.();
  if (adopted !== undefined && adopted !== configured) {
    externalAddress = adopted;
    source = 'adopted';
  }
  if (externalAddress === 'auto') {
    source = 'elastic_ip';
    const eip = await host.elasticIp();
    if ('problem' in eip) {
      issues.push({
        severity: 'error',
        file: 'pbx.yaml',
        line: 0,
        column: 0,
        field: 'network.external_address',
        message: `is "auto" but the Elastic IP cannot be used: ${eip.problem}`,
      });
    } else {
      externalAddress = eip.address;
    }
  }

  const extensions: ResolvedState['extensions'] = [];
  for (const ext of state.extensions) {
    const c = ext.credential;
    let hash: string | undefined;
    if (c.kind === 'md5') {
      hash = c.hash;
    } else if (c.kind === 'password') {
      hash = md5Credential(ext.number, state.realm, c.password);
    } else {
      const got = await host.secrets.read(c.name);
      if ('problem' in got) {
        issues.push(issueFor(ext, locate, 'secret', `secret "${c.name}" for extension ${ext.number}: ${got.problem}`));
      } else {
        const weakness = passwordWeakness(got.value, ext.number);
        if (weakness) {
          issues.push(
            issueFor(ext, locate, 'secret', `the password in secret "${c.name}" for extension ${ext.number} ${weakness}; use at least 12 characters mixing letters and digits`),
          );
        } else {
          hash = md5Credential(ext.number, state.realm, got.value);
        }
      }
    }
    if (hash !== undefined) extensions.push({ ...ext, credential: { kind: 'md5', hash } });
  }

  const conferences: ResolvedState['conferences'] = [];
  for (const room of state.conferences) {
    const { pin: pinRef, moderatorPin: moderatorRef, ...rest } = room;
    const resolved: ResolvedState['conferences'][number] = { ...rest };
    if (pinRef) {
      const pin = await readPin(room, 'pin', pinRef, host, locate, issues);
      if (pin) resolved.pin = pin;
    }
    if (moderatorRef) {
      const moderatorPin = await readPin(room, 'moderator_pin', moderatorRef, host, locate, issues);
      if (moderatorPin) resolved.moderatorPin = moderatorPin;
    }
    if (resolved.pin && resolved.moderatorPin && resolved.pin.digits === resolved.moderatorPin.digits) {
      issues.push(
        roomIssue(room, locate, 'moderator_pin', `secrets "${resolved.pin.secret}" and "${resolved.moderatorPin.secret}" of conference room ${room.number} hold the same PIN: every participant would join as moderator; give moderators a PIN of their own`),
      );
    }
    conferences.push(resolved);
  }

  if (issues.length > 0) return { issues };
  return {
    resolved: { ...state, network: { ...state.network, externalAddress }, extensions, conferences, advertised: { address: externalAddress, source, configured } },
    issues,
  };
}
