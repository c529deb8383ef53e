/**
 * The release tarball (`npm pack`) is what hosts install without npm: everything the agent imports
 * at run time must be inside it. test/e2e/host.test.ts installs and runs the real tarball.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';

describe('the release tarball', () => {
  it('bundles every production dependency, and only those', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { dependencies: Record<string, string>; bundleDependencies: string[] | boolean };
    const bundled = pkg.bundleDependencies === true ? Object.keys(pkg.dependencies) : (pkg.bundleDependencies || []);
    assert.deepEqual([...bundled].sort(), Object.keys(pkg.dependencies).sort());
  });

  it('carries what the bootstrap installs: the compiled agent, the unit, the bootstrap and the JSON Schemas', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as { files: string[]; bin: Record<string, string> };
    assert.deepEqual(pkg.files, ['dist', 'schemas/*.json', 'systemd', 'bootstrap']);
    assert.equal(pkg.bin['pbx-agent'], 'dist/agent/cli/main.js');
  });
});
