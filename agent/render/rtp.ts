/**
 * rtp.conf: the media port range (the security group must open it for UDP) and ICE/STUN.
 * /etc/asterisk/rtp.conf is a symlink to this file: the agent owns all of rtp.conf.
 */
import type { ResolvedState } from '../model.js';
import { ConfText } from './conf-text.js';

export function renderRtpConf(state: ResolvedState): string {
  const { rtp } = state;
  const conf = new ConfText();
  conf.section('general');
  // res_rtp_asterisk silently falls back to 5000-31000 when rtpstart >= rtpend; load refuses that.
  conf.set('rtpstart', rtp.portStart);
  conf.set('rtpend', rtp.portEnd);
  conf.set('icesupport', rtp.ice ? 'yes' : 'no');
  if (rtp.stunServer !== undefined) conf.set('stunaddr', rtp.stunServer);
  return conf.toString();
}
