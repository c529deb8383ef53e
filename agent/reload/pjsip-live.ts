/**
 * reload, PJSIP without a reload: the live-object edits plan/live-objects.ts chose, sent in order.
 * pjsip.conf has already been written with the same objects, so a later reload or restart of
 * Asterisk loads what these edits made live; the daemon then drops them (fold).
 */
import type { LiveObjectStore } from '../asterisk/live-objects.js';
import type { LiveObjectEdit } from '../plan/live-objects.js';

export async function applyLiveObjectEdits(store: LiveObjectStore, edits: readonly LiveObjectEdit[]): Promise<void> {
  for (const edit of edits) {
    if (edit.kind === 'write') await store.write(edit.type, edit.id, edit.json);
    else if (edit.kind === 'create') await store.create(edit.type, edit.id, edit.fields);
    // Already gone is what a delete wants (a second attempt after a dropped connection).
    else await store.delete(edit.type, edit.id);
  }
}
