/**
 * Conference rooms added, changed and removed by a change: a room is its app_confbridge profiles
 * in confbridge.conf, its own dialplan context, and the contexts that include it (who can dial
 * it) in extensions.conf. Works on the managed files' text, like objects.ts does for pjsip.conf.
 */
export interface RoomChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

const ROOM_SECTION = /^\[pbx-agent-conf-([0-9]+)(?:-(?:member|moderator))?\]$/;

/** Room number → everything that makes the room what it is, as one string. */
function rooms(confbridge: string, extensions: string): Map<string, string> {
  const parts = new Map<string, string[]>();
  const add = (room: string, text: string) => parts.set(room, [...(parts.get(room) ?? []), text]);
  for (const [header, text] of sections(confbridge)) {
    const m = ROOM_SECTION.exec(header);
    if (m) add(m[1]!, text);
  }
  for (const [header, text] of sections(extensions)) {
    const m = ROOM_SECTION.exec(header);
    if (m) add(m[1]!, text);
    // Who can dial the room is part of it: `include => pbx-agent-conf-800` in [internal].
    for (const inc of text.matchAll(/^include => pbx-agent-conf-([0-9]+)$/gm)) add(inc[1]!, `${header} includes it`);
  }
  return new Map([...parts].map(([room, texts]) => [room, texts.join('\n')]));
}

/** `[name]` line → the section's text without comments and trailing blank lines. */
function sections(body: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const chunk of body.split(/\n(?=\[)/)) {
    const lines = chunk.split('\n').filter((l) => l !== '' && !l.startsWith(';'));
    if (lines[0]?.startsWith('[')) out.push([lines[0], lines.join('\n')]);
  }
  return out;
}

export function compareRooms(before: { confbridge: string; extensions: string }, after: { confbridge: string; extensions: string }): RoomChanges {
  const old = rooms(before.confbridge, before.extensions);
  const now = rooms(after.confbridge, after.extensions);
  const byNumber = (x: string, y: string) => Number(x) - Number(y) || (x < y ? -1 : x > y ? 1 : 0);
  return {
    added: [...now.keys()].filter((r) => !old.has(r)).sort(byNumber),
    changed: [...now.keys()].filter((r) => old.has(r) && old.get(r) !== now.get(r)).sort(byNumber),
    removed: [...old.keys()].filter((r) => !now.has(r)).sort(byNumber),
  };
}
