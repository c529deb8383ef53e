/**
 * load: config repo snapshot → DesiredState, or every problem found, located. Pure.
 */
import { Extension, ExtensionsFile, SiteFile, type ExtensionData, type ExtensionsFileData, type SiteFileData } from '../../schemas/config-repo.js';
import type { Credential, DesiredConference, DesiredExtension, DesiredState, DesiredTransport, Locate, Protocol } from '../model.js';
import { checkConferences, conferenceVideoMode, checkExtensions, checkSite, type ExtensionEntry } from './cross-check.js';
import { fileIssue, hasErrors, sortIssues, type ConfigIssue } from './issues.js';
import type { RepoSnapshot } from './read-repo.js';
import { validateFile } from './validate.js';
import { entryCount, entrySpans, entryText, type EntrySpans } from './entries.js';
import { locate, parseEntryFast, parsePositioned, parseYaml, type ParsedYaml } from './yaml-document.js';

export { readConfigRepo, type RepoSnapshot } from './read-repo.js';
export { formatIssue, hasErrors, type ConfigIssue } from './issues.js';

export interface LoadResult {
  /** Present only when there are no error-level issues. */
  state?: DesiredState;
  /** Errors and warnings, sorted by file and line. */
  issues: ConfigIssue[];
  /** What was read, for one-line summaries. */
  summary: { files: number; extensions: number; disabled: number };
  /** Line and column of a SourceRef in the state, for later stages' messages. */
  locate: Locate;
  /**
   * What was taken from the previous load instead of being parsed and validated again: whole
   * extensions files whose text is unchanged, and the unchanged entries of changed files.
   */
  reused: { files: number; entries: number };
}

const PROTOCOLS: Protocol[] = ['udp', 'tcp', 'tls'];

function credentialOf(ext: ExtensionEntry['data']): Credential {
  if (ext.secret !== undefined) return { kind: 'secret', name: ext.secret };
  if (ext.md5 !== undefined) return { kind: 'md5', hash: ext.md5 };
  return { kind: 'password', password: ext.password ?? '' };
}

function buildState(site: SiteFileData, siteFile: string, entries: ExtensionEntry[]): DesiredState {
  const transports: DesiredTransport[] = [];
  for (const protocol of PROTOCOLS) {
    const t = site.network.transports[protocol];
    if (!t) continue;
    const transport: DesiredTransport = { name: `transport-${protocol}`, protocol, bind: t.bind, port: t.port };
    if ('cert_file' in t) {
      transport.certFile = t.cert_file;
      transport.privKeyFile = t.priv_key_file;
    }
    transports.push(transport);
  }

  const extensions: DesiredExtension[] = [];
  for (const { data, parsed, path } of entries) {
    if (!data.enabled) continue;
    const ext: DesiredExtension = {
      number: data.number,
      credential: credentialOf(data),
      // Cross-checks guarantee one of the two is set.
      codecProfile: (data.codec_profile ?? site.defaults.codec_profile)!,
      context: data.context ?? site.defaults.context,
      maxContacts: data.max_contacts ?? site.defaults.max_contacts,
      ringSeconds: data.ring_seconds ?? site.defaults.ring_seconds,
      qualifySeconds: data.qualify_seconds ?? site.defaults.qualify_seconds,
      source: { file: parsed.file, path },
    };
    if (data.name !== undefined) ext.name = data.name;
    if (data.voicemail !== undefined && data.voicemail !== false) {
      ext.voicemail = data.voicemail === true || data.voicemail.email === undefined ? {} : { email: data.voicemail.email };
    }
    extensions.push(ext);
  }
  // Numeric order (then text order for equal values such as 0100 and 100) keeps rendering
  // independent of file names and of the order inside files.
  const byNumber = (a: { number: string }, b: { number: string }) => Number(a.number) - Number(b.number) || (a.number < b.number ? -1 : a.number > b.number ? 1 : 0);
  extensions.sort(byNumber);

  const allContexts = Object.keys(site.dialplan.contexts).sort();
  const conferences: DesiredConference[] = site.conferences.map((c, i) => {
    const room: DesiredConference = {
      number: c.number,
      // Cross-checks guarantee one of the two is set.
      codecProfile: (c.codec_profile ?? site.defaults.codec_profile)!,
      videoMode: conferenceVideoMode(site, c),
      maxMembers: c.max_members,
      contexts: c.contexts ? [...c.contexts].sort() : allContexts,
      announceJoinLeave: c.announce_join_leave,
      announceUserCount: c.announce_user_count,
      musicOnHoldWhenEmpty: c.music_on_hold_when_empty,
      quiet: c.quiet,
      startMuted: c.startmuted,
      waitMarked: c.wait_marked,
      endMarked: c.end_marked,
      source: { file: siteFile, path: ['conferences', i] },
    };
    if (c.name !== undefined) room.name = c.name;
    if (c.pin !== undefined) room.pin = { secret: c.pin.secret };
    if (c.moderator_pin !== undefined) room.moderatorPin = { secret: c.moderator_pin.secret };
    return room;
  });
  conferences.sort(byNumber);

  const rtp: DesiredState['rtp'] = { portStart: site.rtp.port_start, portEnd: site.rtp.port_end, ice: site.rtp.ice };
  if (site.rtp.stun_server !== undefined) rtp.stunServer = site.rtp.stun_server;

  const network: DesiredState['network'] = {
    externalAddress: site.network.external_address,
    localNets: [...site.network.local_net],
    transports,
  };
  if (site.network.allowed_networks) network.allowedNetworks = [...site.network.allowed_networks];
  return {
    network,
    realm: site.sip.realm,
    rtp,
    codecProfiles: Object.entries(site.codec_profiles)
      .map(([name, p]) => ({
        name,
        audio: [...p.audio],
        video: [...(p.video ?? [])],
        maxVideoStreams: p.video ? (p.max_video_streams ?? 1) : 0,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    contexts: Object.entries(site.dialplan.contexts)
      .map(([name, c]) => ({ name, includes: [...c.includes] }))
      .sort((a, b) => (a.name < b.name ? -1 : 1)),
    featureCodes: { voicemail: site.dialplan.feature_codes.voicemail },
    removalGuard: { maxCount: site.removal_guard.max_count, maxPercent: site.removal_guard.max_percent },
    extensions,
    conferences,
  };
}

/**
 * A valid repo that leaves Asterisk without a single phone is almost always a mistake (a renamed
 * extensions folder, every extension switched off); plan and apply refuse to remove the last
 * extensions of a PBX unless told to, and validate says so first.
 */
function noPhonesWarnings(siteFile: string, extensions: number, disabled: number): ConfigIssue[] {
  const warn = (message: string): ConfigIssue => ({ ...fileIssue(siteFile, message), severity: 'warning' });
  if (extensions === 0) {
    return [warn('no extension is defined, so Asterisk would have no phones; extensions are read from extensions/**/*.yaml and from `extensions:` in this file')];
  }
  if (disabled === extensions) {
    return [warn(`all ${extensions} extension${extensions === 1 ? ' is' : 's are'} disabled (enabled: false), so Asterisk would have no phones`)];
  }
  return [];
}

interface LoadedExtensionsFile {
  text: string;
  parsed?: ParsedYaml;
  data?: ExtensionsFileData;
  issues: readonly ConfigIssue[];
  /** Where each of data.extensions is in text (entries.ts), when valid and of the plain layout. */
  spans?: EntrySpans;
  /** Entries taken from the previous load of the file when it was loaded. */
  reusedEntries?: number;
}

function loadExtensionsFile(file: RepoSnapshot['extensionFiles'][number], previous: LoadedExtensionsFile | undefined): LoadedExtensionsFile {
  const spans = entrySpans(file.text);
  const changed = spans && previous ? loadChangedEntries(file, spans, previous) : undefined;
  if (changed) return changed;

  const { parsed, issues } = parseYaml(file);
  if (!parsed) return { text: file.text, issues };
  if (parsed.data === null || parsed.data === undefined) {
    return { text: file.text, issues: [...issues, fileIssue(file.path, 'is empty; expected a list under `extensions:`')] };
  }
  const { data, issues: schemaIssues } = validateFile(parsed, ExtensionsFile);
  const loaded: LoadedExtensionsFile = { text: file.text, parsed: positionsOnly(parsed), ...(data ? { data: detached(data) } : {}), issues: [...issues, ...schemaIssues] };
  // Every entry starts at one of the spans (entries.ts): as many spans as entries, and each span
  // is exactly one entry.
  if (spans && data && loaded.issues.length === 0 && entryCount(spans) === data.extensions.length) loaded.spans = spans;
  return loaded;
}

/**
 * Kept for positions only: the raw YAML data is not needed once validated, and at 10,000
 * extensions it is megabytes the daemon would hold between runs.
 */
function positionsOnly(parsed: ParsedYaml): ParsedYaml {
  return { file: parsed.file, data: undefined, positioned: parsed.positioned };
}

/**
 * A changed file of the plain layout, from the previous load of it: an entry whose text is the
 * same as one of the previous entries has its data; the others are parsed and validated alone.
 * Undefined as soon as one of them does not parse or validate: the whole file is then loaded as
 * usual, which says what is wrong and where.
 */
function loadChangedEntries(file: RepoSnapshot['extensionFiles'][number], spans: EntrySpans, previous: LoadedExtensionsFile): LoadedExtensionsFile | undefined {
  if (!previous.spans || !previous.data || /[&*]/.test(file.text)) return undefined;
  const known = new Map<string, ExtensionData>();
  for (let i = 0; i < entryCount(previous.spans); i++) known.set(entryText(previous.text, previous.spans, i), previous.data.extensions[i]!);
  const extensions: ExtensionData[] = [];
  let reusedEntries = 0;
  for (let i = 0; i < entryCount(spans); i++) {
    const text = entryText(file.text, spans, i);
    let entry = known.get(text);
    if (entry) reusedEntries++;
    else {
      const raw = parseEntryFast(text);
      if (raw === undefined) return undefined;
      const result = Extension.safeParse(raw);
      if (!result.success) return undefined;
      entry = detached(result.data);
    }
    extensions.push(entry);
  }
  let positioned: ReturnType<ParsedYaml['positioned']> | undefined;
  const parsed: ParsedYaml = { file: file.path, data: undefined, positioned: () => (positioned ??= parsePositioned(file.text)) };
  return { text: file.text, parsed, data: { extensions }, issues: [], spans, reusedEntries };
}

/**
 * The validated data with strings of its own. The fast parser's strings are slices of its own copy
 * of the file (js-yaml appends a terminator to the input), so keeping them between runs would keep
 * a second copy of every extensions file: 2 MB at 10,000 extensions. The schema's output is plain
 * JSON data (no transforms), so a round trip through JSON gives the same values.
 */
function detached<T>(data: T): T {
  return JSON.parse(JSON.stringify(data)) as T;
}

/**
 * The extensions files of the previous load, parsed and validated, by path. A push nearly always
 * changes one file of many, and the same text always gives the same result: the others are taken
 * from here instead of being parsed and validated again (10,000 extensions in 20 files: ~500 ms
 * under the unit's node flags, against ~25 ms for the one changed file). Only the latest load's
 * files are kept, so the cache is never larger than one repo's data.
 */
let lastLoaded = new Map<string, LoadedExtensionsFile>();

interface LoadedSiteFile {
  path: string;
  text: string;
  parsed?: ParsedYaml;
  data?: SiteFileData;
  issues: readonly ConfigIssue[];
}

/**
 * The site file of the previous load, for the same reason: it rarely changes, and its usual
 * content (a quoted feature code such as "*97") takes the positioned parser, ~10 ms a run under
 * the unit's node flags.
 */
let lastSite: LoadedSiteFile | undefined;

function loadSiteFile(file: NonNullable<RepoSnapshot['site']>): LoadedSiteFile {
  if (lastSite?.path === file.path && lastSite.text === file.text) return lastSite;
  const { parsed, issues } = parseYaml(file);
  if (!parsed) return { path: file.path, text: file.text, issues };
  const { data, issues: schemaIssues } = validateFile(parsed, SiteFile);
  return { path: file.path, text: file.text, parsed, ...(data ? { data } : {}), issues: [...issues, ...schemaIssues] };
}

export function loadDesiredState(snapshot: RepoSnapshot): LoadResult {
  const issues: ConfigIssue[] = [...snapshot.issues];

  const loadedSite = snapshot.site ? loadSiteFile(snapshot.site) : undefined;
  lastSite = loadedSite;
  issues.push(...(loadedSite?.issues ?? []));
  const site = loadedSite?.data;
  const siteParsed = loadedSite?.parsed;

  const entries: ExtensionEntry[] = [];
  if (site && siteParsed) {
    site.extensions.forEach((data, i) => entries.push({ data, parsed: siteParsed!, path: ['extensions', i] }));
  }
  const seen = new Map<string, LoadedExtensionsFile>();
  const reused = { files: 0, entries: 0 };
  for (const file of snapshot.extensionFiles) {
    const previous = lastLoaded.get(file.path);
    const unchanged = previous?.text === file.text;
    const loaded = unchanged ? previous : loadExtensionsFile(file, previous);
    if (unchanged) reused.files++;
    else reused.entries += loaded.reusedEntries ?? 0;
    seen.set(file.path, loaded);
    issues.push(...loaded.issues);
    const { parsed, data } = loaded;
    if (parsed) data?.extensions.forEach((ext, i) => entries.push({ data: ext, parsed, path: ['extensions', i] }));
  }
  lastLoaded = seen;

  if (site && siteParsed) {
    issues.push(...checkSite(site, siteParsed));
    issues.push(...checkExtensions(site, siteParsed, entries));
    issues.push(...checkConferences(site, siteParsed, entries));
  }

  const byFile = new Map<string, ParsedYaml>(entries.map((e) => [e.parsed.file, e.parsed]));
  if (siteParsed) byFile.set(siteParsed.file, siteParsed);
  const locateRef: Locate = (ref) => {
    const parsed = byFile.get(ref.file);
    return parsed ? locate(parsed, ref.path) : { line: 0, column: 0 };
  };

  const disabled = entries.filter((e) => !e.data.enabled).length;
  if (site && siteParsed && !hasErrors(issues)) issues.push(...noPhonesWarnings(siteParsed.file, entries.length, disabled));
  const sorted = sortIssues(issues);
  const summary = {
    files: (snapshot.site ? 1 : 0) + snapshot.extensionFiles.length,
    extensions: entries.length - disabled,
    disabled,
  };
  if (hasErrors(sorted) || !site) return { issues: sorted, summary, locate: locateRef, reused };
  return { state: buildState(site, siteParsed!.file, entries), issues: sorted, summary, locate: locateRef, reused };
}
