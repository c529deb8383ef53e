/**
 * Golden files: expected output committed under test/golden/. `UPDATE_GOLDEN=1 npm test`
 * rewrites them; review the diff before committing it.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

const GOLDEN_ROOT = path.resolve('test/golden');

export async function assertGolden(rel: string, actual: string): Promise<void> {
  const file = path.join(GOLDEN_ROOT, rel);
  if (process.env.UPDATE_GOLDEN === '1') {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, actual);
    return;
  }
  let expected: string;
  try {
    expected = await readFile(file, 'utf8');
  } catch {
    assert.fail(`golden file test/golden/${rel} is missing; run UPDATE_GOLDEN=1 npm test and review it`);
  }
  assert.equal(actual, expected, `rendered text differs from test/golden/${rel}`);
}
