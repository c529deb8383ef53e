/**
 * Live Asterisk state against the desired state, on a schedule: every endpoint the agent manages
 * is live, the transports carry the Elastic IP and local_net, the RTP range is the rendered one.
 * Someone reloading a broken hand-written file, or an Asterisk that came up without the agent's
 * config, shows up here.
 */
import type { AsteriskControl } from '../asterisk/control.js';
import { verifyLiveState, type Mismatch } from '../verify/index.js';

export async function findAsteriskDrift(asterisk: AsteriskControl, pjsipBody: string, rtpBody: string): Promise<Mismatch[]> {
  const result = await verifyLiveState(
    asterisk,
    [
      // Everything as "added" so that every managed endpoint must be present (no detail reads).
      { module: 'res_pjsip', before: '', after: pjsipBody },
      { module: 'res_rtp_asterisk', before: rtpBody, after: rtpBody },
    ],
    { detailLimit: 0 },
  );
  return result.mismatches;
}
