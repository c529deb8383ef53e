/**
 * What a change would do to the phones beyond what its diff shows: valid YAML and a valid schema
 * still take phones off the PBX when a realm, a port or an address is mistyped. Each warning says
 * the consequence and what to do. Pure.
 */
import { optionOf, type PjsipComparison } from './objects.js';

export type PlanWarningKind = 'credentials_locked_out' | 'transport_port' | 'transport_removed' | 'external_address' | 'rtp_range';

export interface PlanWarning {
  kind: PlanWarningKind;
  message: string;
}

/** `a b c ... (40)`: a list short enough for one line. */
export function listNumbers(xs: readonly string[], max = 8): string {
  return xs.length > max ? `${xs.slice(0, max).join(' ')} ... (${xs.length})` : xs.join(' ');
}

const portOf = (bind: string | undefined) => bind?.slice(bind.lastIndexOf(':') + 1);

function rtpRange(body: string | undefined): string | undefined {
  if (body === undefined) return undefined;
  const start = /^rtpstart=(\d+)$/m.exec(body)?.[1];
  const end = /^rtpend=(\d+)$/m.exec(body)?.[1];
  return start && end ? `${start}-${end}` : undefined;
}

/**
 * `pjsip`: the comparison of the managed pjsip.conf (absent when it does not change);
 * `rtp`: the bodies of rtp.conf before (undefined: no file yet) and after.
 */
export function planWarnings(pjsip: PjsipComparison | undefined, rtp: { before: string | undefined; after: string }): PlanWarning[] {
  const warnings: PlanWarning[] = [];
  if (pjsip) {
    if (pjsip.lockedOut.length > 0) {
      const first = pjsip.lockedOut[0]!;
      const from = optionOf(pjsip.objectBefore('auth', first), 'realm') ?? 'asterisk';
      const to = optionOf(pjsip.object('auth', first), 'realm') ?? 'asterisk';
      warnings.push({
        kind: 'credentials_locked_out',
        message:
          `sip.realm changes from "${from}" to "${to}" but the md5 credential of ${listNumbers(pjsip.lockedOut)} stays the same: ` +
          'it was computed with the old realm, so these phones can no longer register (Asterisk answers 401). ' +
          `Compute each again with \`pbx-agent md5 NUMBER --realm ${to}\`, or keep the realm`,
      });
    }
    const after = new Map(pjsip.transports().map((t) => [t.name, t]));
    for (const old of pjsip.transportsBefore()) {
      const now = after.get(old.name);
      if (!now) {
        warnings.push({
          kind: 'transport_removed',
          message: `${old.name} is removed: phones that reach the PBX over it can no longer do so once Asterisk restarts`,
        });
        continue;
      }
      const [was, is] = [portOf(optionOf(old, 'bind')), portOf(optionOf(now, 'bind'))];
      if (was !== is) {
        warnings.push({
          kind: 'transport_port',
          message:
            `${old.name} moves from port ${was} to ${is}: every phone must be set to the new port, and the security group must open it; ` +
            `Asterisk keeps listening on ${was} until it restarts`,
        });
      }
    }
    const addressOf = (ts: ReturnType<PjsipComparison['transports']>) => ts.map((t) => optionOf(t, 'external_media_address')).find((a) => a !== undefined);
    const [wasAddress, isAddress] = [addressOf(pjsip.transportsBefore()), addressOf(pjsip.transports())];
    if (wasAddress !== undefined && isAddress !== undefined && wasAddress !== isAddress) {
      warnings.push({
        kind: 'external_address',
        message:
          `the external address changes from ${wasAddress} to ${isAddress}: unless ${isAddress} is this instance's Elastic IP, ` +
          'phones outside the VPC get one-way audio (`pbx-agent check` compares them)',
      });
    }
  }
  const [wasRange, isRange] = [rtpRange(rtp.before), rtpRange(rtp.after)];
  if (wasRange !== undefined && isRange !== undefined && wasRange !== isRange) {
    warnings.push({
      kind: 'rtp_range',
      message: `the RTP range changes from ${wasRange} to ${isRange}: the security group must open UDP ${isRange}, or calls have no audio (\`pbx-agent check\` compares them)`,
    });
  }
  return warnings;
}
