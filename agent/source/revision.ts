/**
 * The revision of a config repo working tree, as shown in managed file headers.
 * git is reached only through simple-git, and only from agent/source/.
 */
import { simpleGit } from 'simple-git';
import { MASS_REMOVAL_TRAILER } from '../plan/guard.js';

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

/**
 * Whether the commit being applied acknowledges a mass removal with the trailer
 * `Allow-Mass-Removal: yes` (plan/guard.ts), and which commit says so. `commit`: the commit a git
 * source checked out; without it, HEAD of the work tree at `dir`, and only when the work tree has
 * no uncommitted changes (a trailer speaks for its commit, not for edits made after it).
 */
export async function massRemovalAcknowledgement(dir: string, commit?: string): Promise<string | undefined> {
  try {
    const git = simpleGit({ baseDir: dir, timeout: { block: 10_000 } });
    if (!(await git.checkIsRepo())) return undefined;
    if (commit === undefined && !(await git.status(['--porcelain', '--', '.'])).isClean()) return undefined;
    const rev = commit ?? 'HEAD';
    const values = await git.raw(['log', '-1', `--format=%(trailers:key=${MASS_REMOVAL_TRAILER},valueonly,separator=%x00)`, rev]);
    if (!values.split('\0').some((v) => /^(yes|true)$/i.test(v.trim()))) return undefined;
    const short = (await git.revparse(['--short=12', rev])).trim();
    return `the trailer "${MASS_REMOVAL_TRAILER}: yes" of commit ${short}`;
  } catch {
    return undefined;
  }
}
