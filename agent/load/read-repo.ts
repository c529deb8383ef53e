/**
 * The I/O edge of the load stage: read the config repo's YAML files from disk, refusing anything
 * that is not a plain, reasonably sized text file inside the repo. Everything after this works on
 * the returned snapshot and is pure.
 */
import { lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileIssue, type ConfigIssue } from './issues.js';
import { editDistance } from './validate.js';

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

/**
 * UTF-16, as Windows editors save "Unicode" text: by its byte order mark, or, without one, by
 * text whose every other byte is NUL (ASCII characters in 16-bit units).
 */
function utf16Encoding(bytes: Uint8Array): string | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return 'UTF-16 (little-endian)';
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return 'UTF-16 (big-endian)';
  const n = Math.min(bytes.length, 512) & ~1;
  if (n < 4) return undefined;
  let evenZeros = 0;
  let oddZeros = 0;
  for (let i = 0; i < n; i += 2) {
    if (bytes[i] === 0) evenZeros++;
    if (bytes[i + 1] === 0) oddZeros++;
  }
  const pairs = n / 2;
  if (oddZeros === pairs && evenZeros === 0) return 'UTF-16 (little-endian)';
  if (evenZeros === pairs && oddZeros === 0) return 'UTF-16 (big-endian)';
  return undefined;
}

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
  const utf16 = utf16Encoding(bytes);
  if (utf16) {
    issues.push(fileIssue(rel, `is ${utf16} text; save it as UTF-8 (in most editors: "Save with encoding", UTF-8)`));
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

const isYamlName = (name: string) => /\.ya?ml$/i.test(name);
const inside = (rootReal: string, target: string) => target === rootReal || target.startsWith(rootReal + path.sep);

/** Where a walk of the extensions folder is: the repo, the files found, the folders already read. */
interface Walk {
  root: string;
  rootReal: string;
  /** The real path of the extensions folder (the target, when it is a symlink). */
  extensionsReal: string;
  out: string[];
  issues: ConfigIssue[];
  /** Real paths of the folders read, so that a link back to one is never read twice or in a loop. */
  visited: Set<string>;
}

/**
 * Where a folder symlink (`rel`, at `abs`) leads, if it is to be followed: a folder inside the
 * repo that is not read anyway. Anything else is said, never skipped silently: a link that quietly
 * dropped its extensions would take those phones off the PBX without a word.
 */
async function folderLinkTarget(walk: Pick<Walk, 'rootReal' | 'issues'> & Partial<Walk>, rel: string, abs: string): Promise<string | undefined> {
  let target: string;
  try {
    target = await realpath(abs);
  } catch {
    walk.issues.push(fileIssue(rel, 'is a symbolic link to something that does not exist; its extensions are not read: fix or remove the link'));
    return undefined;
  }
  if (!inside(walk.rootReal, target)) {
    walk.issues.push(fileIssue(rel, 'is a symbolic link pointing outside the config repo; only files inside the repo are read: copy the folder into the repo'));
    return undefined;
  }
  const parentReal = await realpath(path.dirname(abs));
  if (inside(target, parentReal) || (walk.extensionsReal !== undefined && inside(target, walk.extensionsReal))) {
    walk.issues.push(fileIssue(rel, `is a symbolic link to ${path.relative(walk.rootReal, target) || 'the root of the repo'}, a folder that contains it: a loop; remove the link`));
    return undefined;
  }
  if (walk.extensionsReal !== undefined && (inside(walk.extensionsReal, target) || walk.visited?.has(target))) {
    walk.issues.push({
      ...fileIssue(rel, `is a symbolic link to ${path.relative(walk.rootReal, target)}, which is read already; the link is not followed (its files would be read twice)`),
      severity: 'warning',
    });
    return undefined;
  }
  return target;
}

async function listYamlFiles(walk: Walk, dirRel: string, dirAbs: string, depth: number): Promise<void> {
  const { out, issues } = walk;
  if (depth > MAX_DEPTH) {
    issues.push(fileIssue(dirRel, `is nested more than ${MAX_DEPTH} directories deep; flatten it`));
    return;
  }
  walk.visited.add(await realpath(dirAbs));
  const entries = await readdir(dirAbs, { withFileTypes: true });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    const rel = `${dirRel}/${entry.name}`;
    // A line break in a file name would break every message that names the file.
    if (/[\u0000-\u001f\u007f]/.test(entry.name)) {
      issues.push(fileIssue(JSON.stringify(rel), 'has control characters in its name; rename it'));
      continue;
    }
    let isDirectory = entry.isDirectory();
    let abs = path.join(dirAbs, entry.name);
    if (entry.isSymbolicLink()) {
      const st = await stat(abs).catch(() => undefined);
      if (st?.isDirectory() || st === undefined) {
        if (st === undefined && isYamlName(entry.name)) {
          out.push(rel); // readRepoFile says the link leads nowhere
          continue;
        }
        const target = await folderLinkTarget(walk, rel, abs);
        if (target === undefined) continue;
        isDirectory = true;
        abs = target;
      }
    }
    if (isDirectory) await listYamlFiles(walk, rel, abs, depth + 1);
    else if (isYamlName(entry.name)) {
      if (out.length >= MAX_FILES) {
        issues.push(fileIssue(rel, `too many files: at most ${MAX_FILES} YAML files are read under ${EXTENSIONS_DIR}/`));
        return;
      }
      out.push(rel);
    }
  }
}

/** Folders never looked into for YAML files that would not be read: tooling, not config. */
const NOT_CONFIG = new Set(['node_modules']);
/** How much of a repo is looked at for YAML files that would not be read. */
const MAX_SCANNED_ENTRIES = 20_000;

/** A folder or file name an operator may have meant as `extensions`: another case, a typo. */
function nearExtensions(name: string): boolean {
  const base = name.toLowerCase().replace(/\.ya?ml$/, '');
  return base === EXTENSIONS_DIR || base.startsWith('extension') || editDistance(base, EXTENSIONS_DIR) <= 3;
}

/**
 * YAML files that pbx-agent will not read: a misspelt or renamed extensions folder
 * (`extentions/`, `Extensions/`), or extension files moved to the repo root. They validate as
 * "0 extensions", so each is named as a warning, with "did you mean extensions/?" for a near miss.
 * `read` holds the real paths of the files that are read (through symlinks too).
 */
async function unreadYamlFiles(root: string, rootReal: string, read: ReadonlySet<string>): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const warn = (file: string, message: string) => issues.push({ ...fileIssue(file, message), severity: 'warning' });
  const reads = `pbx-agent reads only pbx.yaml and ${EXTENSIONS_DIR}/**/*.yaml`;
  let budget = MAX_SCANNED_ENTRIES;

  /** YAML files under a folder (symlinks not followed), up to the nesting limit. */
  const countYaml = async (dirRel: string, depth: number): Promise<number> => {
    if (depth > MAX_DEPTH || budget <= 0) return 0;
    const entries = await readdir(path.join(root, dirRel), { withFileTypes: true }).catch(() => []);
    let n = 0;
    for (const e of entries) {
      if (--budget <= 0) break;
      if (e.name.startsWith('.') || NOT_CONFIG.has(e.name)) continue;
      const rel = `${dirRel}/${e.name}`;
      if (e.isDirectory()) n += await countYaml(rel, depth + 1);
      else if (e.isFile() && isYamlName(e.name) && !read.has(path.join(rootReal, rel))) n++;
    }
    return n;
  };

  const top = await readdir(root, { withFileTypes: true }).catch(() => []);
  top.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of top) {
    if (e.name.startsWith('.') || NOT_CONFIG.has(e.name) || e.name === EXTENSIONS_DIR || (SITE_FILE_NAMES as readonly string[]).includes(e.name)) continue;
    if (/[\u0000-\u001f\u007f]/.test(e.name)) continue;
    const hint = nearExtensions(e.name) ? `; did you mean ${EXTENSIONS_DIR}/?` : '';
    if (e.isDirectory()) {
      const n = await countYaml(e.name, 1);
      if (n > 0) {
        warn(`${e.name}/`, `holds ${n} YAML file${n === 1 ? '' : 's'} that ${n === 1 ? 'is' : 'are'} not read (${reads})${hint}`);
      }
    } else if (e.isFile() && isYamlName(e.name) && !read.has(path.join(rootReal, e.name))) {
      warn(e.name, `is not read (${reads})${hint || `; if it lists extensions, move it into ${EXTENSIONS_DIR}/`}`);
    }
  }
  return issues;
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
  const extensionsAbs = path.join(root, EXTENSIONS_DIR);
  const st = await lstat(extensionsAbs).catch(() => undefined);
  // No extensions directory: extensions may all be in pbx.yaml.
  let extensionsReal: string | undefined = st?.isDirectory() ? await realpath(extensionsAbs) : undefined;
  if (st?.isSymbolicLink()) {
    extensionsReal = await folderLinkTarget({ rootReal, issues }, EXTENSIONS_DIR, extensionsAbs);
    if (extensionsReal !== undefined && !(await stat(extensionsReal)).isDirectory()) {
      issues.push(fileIssue(EXTENSIONS_DIR, 'is not a directory; expected a directory of YAML files'));
      extensionsReal = undefined;
    }
  } else if (st && !st.isDirectory()) {
    issues.push(fileIssue(EXTENSIONS_DIR, 'is not a directory; expected a directory of YAML files'));
  }
  if (extensionsReal !== undefined) {
    await listYamlFiles({ root, rootReal, extensionsReal, out: extensionPaths, issues, visited: new Set() }, EXTENSIONS_DIR, extensionsReal, 1);
  }
  const extensionFiles: RepoFile[] = [];
  const read = new Set<string>();
  if (site) read.add(await realpath(path.join(root, site.path)));
  for (const rel of extensionPaths) {
    const file = await readRepoFile(rootReal, root, rel, issues);
    if (file) {
      extensionFiles.push(file);
      read.add(await realpath(path.join(root, rel)));
    }
  }
  issues.push(...(await unreadYamlFiles(root, rootReal, read)));
  return site ? { root, site, extensionFiles, issues } : { root, extensionFiles, issues };
}
