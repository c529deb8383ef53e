/**
 * The mass-removal guard: a change that would take many phones off the PBX at once, or every one
 * of them, is refused until someone says it is meant. The usual cause is not a decision but a
 * typo: a renamed or misspelt extensions/ folder validates as "0 extensions", and applying it
 * unregisters every phone. Pure.
 */
import type { DesiredState } from '../model.js';
import { listNumbers } from './hazards.js';
import type { ReloadPlan } from './index.js';

/** The commit trailer that acknowledges a refused removal, e.g. `Allow-Mass-Removal: yes`. */
export const MASS_REMOVAL_TRAILER = 'Allow-Mass-Removal';
export const MASS_REMOVAL_FLAG = '--allow-mass-removal';

export interface RemovalRefusal {
  /** Extensions the change removes. */
  removed: string[];
  /** Extensions it keeps but whose credential can no longer match (a realm change). */
  lockedOut: string[];
  /** Extensions the PBX has now. */
  before: number;
  /** How many one change may take away without being acknowledged. */
  limit: number;
  /** One line: what the change does and why that is refused. */
  reason: string;
  /** What to do, either way. */
  fix: string;
}

export const ACKNOWLEDGE_HINT =
  `if this is meant, acknowledge it: add the trailer "${MASS_REMOVAL_TRAILER}: yes" to the commit message ` +
  `(git commit --allow-empty -m "Remove ..." -m "${MASS_REMOVAL_TRAILER}: yes"), or run apply or sync with ${MASS_REMOVAL_FLAG}; ` +
  'if not, look for a renamed or misspelt extensions/ folder, extension files moved elsewhere, or extensions set to enabled: false';

/**
 * Refused when the change takes away every extension the PBX has, or more than
 * max(max_count, max_percent of them). "Takes away" is removed or locked out (plan/objects.ts).
 */
export function checkRemovals(plan: ReloadPlan, policy: DesiredState['removalGuard']): RemovalRefusal | undefined {
  const { removed } = plan.extensions;
  const lockedOut = plan.lockedOut;
  const lost = removed.length + lockedOut.length;
  const before = plan.extensionsBefore;
  if (lost === 0 || before === 0) return undefined;
  const limit = Math.max(policy.maxCount, Math.floor((before * policy.maxPercent) / 100));
  const all = lost >= before;
  if (!all && lost <= limit) return undefined;

  const extensions = `extension${before === 1 ? '' : 's'}`;
  let reason: string;
  if (all && lockedOut.length === 0) {
    reason =
      before === 1
        ? `this change removes the only extension of the PBX (${removed[0]}): no phone would be left`
        : `this change removes all ${before} extensions of the PBX (${listNumbers(removed)}): no phone would be left`;
  } else {
    const what = [
      removed.length > 0 ? `removes ${removed.length} (${listNumbers(removed)})` : '',
      lockedOut.length > 0 ? `locks out ${lockedOut.length} (${listNumbers(lockedOut)})` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    reason = all
      ? `this change ${what} of the ${before} ${extensions} of the PBX: no phone would be left working`
      : `this change ${what} of the ${before} ${extensions} of the PBX (${Math.round((lost / before) * 100)}%), ` +
        `more than the ${limit} one change may take away (removal_guard in pbx.yaml)`;
  }
  return { removed, lockedOut, before, limit, reason, fix: ACKNOWLEDGE_HINT };
}
