/**
 * The revision of a config repo working tree, as shown in managed file headers.
 * git is reached only through simple-git, and only from agent/source/.
 */
import { simpleGit } from 'simple-git';

/** `abcdef012345` for a clean checkout, `abcdef012345+local` with uncommitted changes, `unversioned` outside git. */
export async function workTreeRevision(dir: string): Promise<string> {
  try {
    const git = simpleGit({ baseDir: dir, timeout: { block: 10_000 } });
    if (!(await git.checkIsRepo())) return 'unversioned';
    const head = (await git.revparse(['--short=12', 'HEAD'])).trim();
    const status = await git.status(['--porcelain', '--', '.']);
    return status.isClean() ? head : `${head}+local`;
  } catch {
    return 'unversioned';
  }
}
