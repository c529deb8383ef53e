/**
 * The I/O edge of the load stage: read the config repo's YAML files from disk, refusing anything
 * that is not a plain, reasonably sized text file inside the repo. Everything after this works on
 * the returned snapshot and is pure.
 */
import { lstat, readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';
import { fileIssue, type ConfigIssue } from './issues.js';

export const SITE_FILE_NAMES = ['pbx.yaml', 'pbx.yml'] as const;
export const EXTENSIONS_DIR = 'extensions';

/** Larger YAML files are refused unread; 10,000 extensions take about 1 MiB. */
export const MAX_FILE_BYTES = 4 * 1024 * 1024;
export const MAX_FILES = 5000;
const MAX_DEPTH = 8;

export interface RepoFile {
  /** Relative to the repo root, forward slashes. */
  path: string;
  text: string;
}

export interface RepoSnapshot {
  root: string;
  /** The site file (pbx.yaml), if found and readable. */
  site?: RepoFile;
  /** Extension files, sorted by path so that the result never depends on directory order. */
  extensionFiles: RepoFile[];
  issues: ConfigIssue[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads one candidate file after checking it is a regular file inside the repo. */
async function readRepoFile(
  rootReal: string,
  root: string,
  rel: string,
  issues: ConfigIssue[],
): Promise<RepoFile | undefined> {
  const abs = path.join(root, rel);
  let st = await lstat(abs);
  if (st.isSymbolicLink()) {
    let target: string;
    try {
      target = await realpath(abs);
    } catch {
      issues.push(fileIssue(rel, 'is a symbolic link to a file that does not exist; replace it with a regular file'));
      return undefined;
    }
    if (target !== rootReal && !target.startsWith(rootReal + path.sep)) {
      issues.push(
        fileIssue(rel, 'is a symbolic link pointing outside the config repo; only files inside the repo are read'),
      );
      return undefined;
    }
    st = await lstat(target);
  }
  if (!st.isFile()) {
    issues.push(fileIssue(rel, 'is not a regular file; expected a YAML file'));
    return undefined;
  }
  if (st.size > MAX_FILE_BYTES) {
    issues.push(
      fileIssue(
        rel,
        `is ${st.size} bytes, over the limit of ${MAX_FILE_BYTES} bytes; split it into several files under ${EXTENSIONS_DIR}/`,
      ),
    );
    return undefined;
  }
  const bytes = await readFile(abs);
  // Re-check after reading: the file may have grown between stat and read.
  if (bytes.length > MAX_FILE_BYTES) {
    issues.push(fileIssue(rel, `is over the limit of ${MAX_FILE_BYTES} bytes`));
    return undefined;
  }
  if (bytes.includes(0)) {
    issues.push(fileIssue(rel, 'is a binary file (it contains NUL bytes); expected UTF-8 YAML text'));
    return undefined;
  }
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    issues.push(fileIssue(rel, 'is not valid UTF-8 text; expected UTF-8 YAML'));
    return undefined;
  }
  return { path: rel, text };
}

async function listYamlFiles(root: string, dirRel: string, depth: number, out: string[], issues: ConfigIssue[]) {
  if (depth > MAX_DEPTH) {
    issues.push(fileIssue(dirRel, `is nested more than ${MAX_DEPTH} directories deep; flatten it`));
    return;
  }
  const entries = await readdir(path.join(root, dirRel), { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const rel = `${dirRel}/${entry.name}`;
    // A line break in a file name would break every message that names the file.
    if (/[\u0000-\u001f\u007f]/.test(entry.name)) {
      issues.push(fileIssue(JSON.stringify(rel), 'has control characters in its name; rename it'));
      continue;
    }
    // Directory symlinks are not followed: a link could lead anywhere, including into a loop.
    if (entry.isDirectory()) await listYamlFiles(root, rel, depth + 1, out, issues);
    else if (/\.ya?ml$/i.test(entry.name)) {
      if (out.length >= MAX_FILES) {
        issues.push(fileIssue(rel, `too many files: at most ${MAX_FILES} YAML files are read under ${EXTENSIONS_DIR}/`));
        return;
      }
      out.push(rel);
    }
  }
}

/** Reads pbx.yaml and every extensions/**\/*.yaml of the repo at `root`. */
export async function readConfigRepo(root: string): Promise<RepoSnapshot> {
  const issues: ConfigIssue[] = [];
  let rootReal: string;
  try {
    rootReal = await realpath(root);
  } catch {
    return {
      root,
      extensionFiles: [],
      issues: [fileIssue(root, 'config repo directory does not exist')],
    };
  }

  let site: RepoFile | undefined;
  const present = [];
  for (const name of SITE_FILE_NAMES) {
    try {
      await lstat(path.join(root, name));
      present.push(name);
    } catch {
      /* not there */
    }
  }
  if (present.length === 0) {
    issues.push(fileIssue('pbx.yaml', 'is missing: every config repo needs a pbx.yaml at its root (see examples/config-repo)'));
  } else if (present.length > 1) {
    issues.push(fileIssue('pbx.yml', 'both pbx.yaml and pbx.yml exist; keep only pbx.yaml'));
  } else {
    site = await readRepoFile(rootReal, root, present[0]!, issues);
  }

  const extensionPaths: string[] = [];
  try {
    const st = await lstat(path.join(root, EXTENSIONS_DIR));
    if (st.isDirectory()) await listYamlFiles(root, EXTENSIONS_DIR, 1, extensionPaths, issues);
    else issues.push(fileIssue(EXTENSIONS_DIR, 'is not a directory; expected a directory of YAML files'));
  } catch {
    /* no extensions directory: extensions may all be in pbx.yaml */
  }
  const extensionFiles: RepoFile[] = [];
  for (const rel of extensionPaths) {
    const file = await readRepoFile(rootReal, root, rel, issues);
    if (file) extensionFiles.push(file);
  }
  return site ? { root, site, extensionFiles, issues } : { root, extensionFiles, issues };
}
