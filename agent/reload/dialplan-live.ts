/**
 * reload, the dialplan without a reload: the edits plan/dialplan.ts chose, sent one AMI action at
 * a time. extensions.conf has already been written with the same result, so a later reload or a
 * restart of Asterisk loads exactly what these edits made live.
 */
import { AmiError } from '../asterisk/ami.js';
import type { AsteriskControl } from '../asterisk/control.js';
import type { DialplanEdit } from '../plan/dialplan.js';
import { classifyReloadFailure, CONNECTION_CODES } from './errors.js';

export async function applyDialplanEdits(asterisk: AsteriskControl, edits: readonly DialplanEdit[], timeoutMs: number): Promise<void> {
  for (const edit of edits) {
    try {
      await asterisk.editDialplan(edit, timeoutMs);
    } catch (e) {
      if (!(e instanceof AmiError) || !CONNECTION_CODES.has(e.code)) throw classifyReloadFailure('pbx_config', e, timeoutMs);
      // The connection dropped: every edit is idempotent (Replace, or removing what may already be
      // gone), so one more try on the new connection is safe. Verification reads the result back.
      try {
        await asterisk.editDialplan(edit, timeoutMs);
      } catch (again) {
        throw classifyReloadFailure('pbx_config', again, timeoutMs);
      }
    }
  }
}
