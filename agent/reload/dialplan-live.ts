/**
 * reload, the dialplan without a reload: the edits plan/dialplan.ts chose, sent one AMI action at
 * a time. extensions.conf has already been written with the same result, so a later reload or a
 * restart of Asterisk loads exactly what these edits made live.
 */
import type { AsteriskControl } from '../asterisk/control.js';
import type { DialplanEdit } from '../plan/dialplan.js';
import { onceMoreIfDropped } from './errors.js';

export async function applyDialplanEdits(asterisk: AsteriskControl, edits: readonly DialplanEdit[], timeoutMs: number): Promise<void> {
  // Every edit is idempotent (Replace, or removing what may already be gone): sending one again
  // after a dropped connection is safe.
  for (const edit of edits) await onceMoreIfDropped('pbx_config', timeoutMs, () => asterisk.editDialplan(edit, timeoutMs));
}
