/**
 * A fresh Ubuntu 24.04 system image in a temp directory, as it looks right after
 * `apt-get install asterisk`, for running bootstrap/bootstrap.sh in its --root test mode:
 * /etc/os-release, passwd/group/shadow/gshadow with root and the package's asterisk user, and the
 * stock /etc/asterisk files the bootstrap edits. Everything the bootstrap does then happens under
 * that directory: users are added to its own passwd and group files (useradd --prefix) and files
 * are chowned to the numeric ids found there, so ownership is checked against those files.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, chown, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BOOTSTRAP = path.join(REPO_ROOT, 'bootstrap/bootstrap.sh');

/** The asterisk package's user and group (numbers as on a real Ubuntu 24.04 install). */
export const ASTERISK_UID = 112;
export const ASTERISK_GID = 119;

const UBUNTU_OS_RELEASE = `PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
`;
/** Debian unstable: no VERSION_ID (the end-to-end test's container runs it). */
export const DEBIAN_SID_OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux forky/sid"
NAME="Debian GNU/Linux"
VERSION_CODENAME=forky
ID=debian
`;
export const DEBIAN_OS_RELEASE = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION_CODENAME=bookworm
ID=debian
`;

/** Ubuntu's manager.conf: AMI on loopback, no users, and manager.d/*.conf pulled in. */
export const UBUNTU_MANAGER_CONF = `;
; Asterisk Call Management support
;

; By default asterisk will listen on localhost only.
[general]
enabled = yes
port = 5038
bindaddr = 127.0.0.1

; No access is allowed by default.
; To set a password, create a file in /etc/asterisk/manager.d
; use creative permission games to allow other serivces to create their own
; files
#include "manager.d/*.conf"
`;

/** Asterisk's own sample manager.conf: AMI off, on every interface, no manager.d include. */
export const UPSTREAM_MANAGER_CONF = `;
; AMI - The Asterisk Manager Interface
;
[general]
enabled = no
;webenabled = yes

port = 5038
bindaddr = 0.0.0.0

;[mark]
;secret = mysecret
;read = system,call,log,verbose,agent,user,config,dtmf,reporting,cdr,dialplan
`;

export const STOCK_PJSIP = `; PJSIP Configuration Samples and Quick Reference
;
;[transport-udp]
;type=transport
;protocol=udp
;bind=0.0.0.0

[trunk-provider]
type=registration
server_uri=sip:sip.example.net
client_uri=sip:me@sip.example.net
`;

export const STOCK_EXTENSIONS = `; extensions.conf - the Asterisk dial plan
[general]
;
; If static is set to no, or omitted, then the pbx_config will rewrite
; this file when extensions are modified.
;
static=yes
;
; if static=yes and writeprotect=no, you can save dialplan by
; CLI command "dialplan save" too
;
writeprotect=no
clearglobalvars=no

[globals]
CONSOLE=Console/dsp

[outbound]
exten => _9NXXXXXX,1,Dial(PJSIP/\${EXTEN:1}@trunk-provider)
`;

export const STOCK_VOICEMAIL = `[general]
format=wav49|gsm|wav
serveremail=asterisk

[zonemessages]
eastern=America/New_York|'vm-received' Q 'digits/at' IMp

[default]
1234 => 4242,Example Mailbox,root@localhost
`;

/** Debian's confbridge.conf (asterisk-config), without its comments and sample menus. */
export const STOCK_CONFBRIDGE = `[general]

[default_user]
type=user

[default_bridge]
type=bridge
`;

export const STOCK_RTP = `;
; RTP Configuration
;
[general]
;
; RTP start and RTP end configure start and end addresses
;
rtpstart=10000
rtpend=20000
`;

/**
 * Debian's http.conf (asterisk-config 22.10.1, the packaging of Ubuntu's 20.x), most comments
 * left out: the HTTP server off (`;enabled=yes`), bound to loopback, the default port (8088)
 * commented out, TLS off.
 */
export const STOCK_HTTP = `;
; Asterisk Built-in mini-HTTP server
;
[general]
;
servername=Asterisk
;
; Whether HTTP/HTTPS interface is enabled or not.  Default is no.
; This also affects manager/rawman/mxml access (see manager.conf)
;
;enabled=yes
;
; Address to bind to, both for HTTP and HTTPS. You MUST specify
; a bindaddr in order for the HTTP server to run. There is no
; default value.
;
bindaddr=127.0.0.1
;
; Port to bind to for HTTP sessions (default is 8088)
;
;bindport=8088
;
;prefix=asterisk
;
;tlsenable=yes          ; enable tls - default no.
;tlsbindaddr=0.0.0.0:8089    ; address and port to bind to - default is bindaddr and port 8089.

;[post_mappings]
;uploads = /var/lib/asterisk/uploads/
`;

/** Debian's ari.conf: ARI on, no user (the sample user commented out). */
export const STOCK_ARI = `[general]
enabled = yes       ; When set to no, ARI support is disabled.
;pretty = no        ; When set to yes, responses from ARI are
;                   ; formatted to be human readable.
;allowed_origins =  ; Comma separated list of allowed origins, for
;                   ; Cross-Origin Resource Sharing. May be set to * to
;                   ; allow all origins.

;[username]
;type = user        ; Specifies user configuration
;read_only = no     ; When set to yes, user is only authorized for
;                   ; read-only requests.
;
;password =         ; Crypted or plaintext password (see password_format).
;password_format = plain
`;

/** Debian's sorcery.conf: the unit tests' sections active, the realtime [res_pjsip] commented out. */
export const STOCK_SORCERY = `; Sample configuration file for Sorcery Data Access Layer

[general]

;update_or_create_on_update_miss = no

;
; The following object mappings are used by the unit test to test certain functionality of sorcery.
;
[test_sorcery_section]
test=memory

[test_sorcery_cache]
test/cache=test
test=memory

;[res_mwi_external]
;mailboxes=astdb,mwi_external

;
; The following object mappings set PJSIP objects to use realtime database mappings from extconfig
; with the table names used when automatically generating configuration from the alembic script.
;
;[res_pjsip]
;endpoint=realtime,ps_endpoints
;auth=realtime,ps_auths
;aor=realtime,ps_aors
;domain_alias=realtime,ps_domain_aliases

;[res_pjsip_endpoint_identifier_ip]
;identify=realtime,ps_endpoint_id_ips
`;

/** Debian's modules.conf: autoload, a few obsolete or conflicting modules not loaded. */
export const STOCK_MODULES = `;
; Asterisk configuration file
;
; Module Loader configuration file
;

[modules]
autoload=yes
;preload => res_odbc.so
;preload => res_config_odbc.so
noload => pbx_gtkconsole.so
noload => pbx_kdeconsole.so
noload => app_intercom.so
noload => chan_modem.so
load => res_musiconhold.so
noload => chan_alsa.so
noload => chan_console.so
noload => chan_oss.so
noload => cdr_sqlite.so
noload => app_directory_odbc.so
noload => res_config_odbc.so
noload => res_config_pgsql.so
;
; Module names listed in "global" section will have symbols globally
; exported to modules loaded after them.
;
[global]
`;

export interface UbuntuRoot {
  root: string;
  /** Absolute path of a file inside the image, e.g. at('/etc/pbx-agent/agent.yaml'). */
  at(p: string): string;
}

const made: string[] = [];

export async function tempDirectory(prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function removeTempDirectories(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

async function put(file: string, text: string, mode: number, uid = 0, gid = 0): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, text);
  await chown(file, uid, gid);
  await chmod(file, mode);
}

/** A system image as left by installing Ubuntu 24.04 and its asterisk package. */
export async function makeUbuntuRoot(options: { osRelease?: string; managerConf?: string } = {}): Promise<UbuntuRoot> {
  const root = await tempDirectory('pbx-bootstrap-root-');
  const at = (p: string) => path.join(root, p);
  await put(at('/etc/os-release'), options.osRelease ?? UBUNTU_OS_RELEASE, 0o644);
  await put(
    at('/etc/passwd'),
    `root:x:0:0:root:/root:/bin/bash\nasterisk:x:${ASTERISK_UID}:${ASTERISK_GID}:Asterisk PBX daemon,,,:/var/lib/asterisk:/usr/sbin/nologin\n`,
    0o644,
  );
  await put(at('/etc/group'), `root:x:0:\nasterisk:x:${ASTERISK_GID}:\n`, 0o644);
  await put(at('/etc/shadow'), 'root:*:19000:0:99999:7:::\nasterisk:!:19000::::::\n', 0o600);
  await put(at('/etc/gshadow'), 'root:*::\nasterisk:!::\n', 0o600);
  for (const dir of ['/var/lib', '/var/log', '/opt', '/usr/local/bin', '/etc/systemd/system']) await mkdir(at(dir), { recursive: true });

  const a = (name: string) => at(`/etc/asterisk/${name}`);
  await mkdir(a('manager.d'), { recursive: true });
  await put(a('manager.conf'), options.managerConf ?? UBUNTU_MANAGER_CONF, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('pjsip.conf'), STOCK_PJSIP, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('extensions.conf'), STOCK_EXTENSIONS, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('voicemail.conf'), STOCK_VOICEMAIL, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('confbridge.conf'), STOCK_CONFBRIDGE, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('rtp.conf'), STOCK_RTP, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('http.conf'), STOCK_HTTP, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('ari.conf'), STOCK_ARI, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('sorcery.conf'), STOCK_SORCERY, 0o640, ASTERISK_UID, ASTERISK_GID);
  await put(a('modules.conf'), STOCK_MODULES, 0o640, ASTERISK_UID, ASTERISK_GID);
  for (const dir of [a('manager.d'), at('/etc/asterisk')]) {
    await chown(dir, ASTERISK_UID, ASTERISK_GID);
    await chmod(dir, 0o750);
  }
  return { root, at };
}

/**
 * A small pbx-agent source tree for the bootstrap to install (--source-dir): the real
 * package.json and unit file, so that what lands in /opt/pbx-agent and /etc/systemd/system is
 * the real thing, without copying a working tree that other work may be changing meanwhile.
 */
export async function makeAgentSource(): Promise<string> {
  const dir = await tempDirectory('pbx-bootstrap-source-');
  await mkdir(path.join(dir, 'systemd'));
  await mkdir(path.join(dir, 'bootstrap'));
  await copyFile(path.join(REPO_ROOT, 'package.json'), path.join(dir, 'package.json'));
  await copyFile(path.join(REPO_ROOT, 'systemd/pbx-agent.service'), path.join(dir, 'systemd/pbx-agent.service'));
  await copyFile(BOOTSTRAP, path.join(dir, 'bootstrap/bootstrap.sh'));
  await writeFile(path.join(dir, 'README.md'), '# pbx-agent (test copy)\n');
  return dir;
}

export interface BootstrapRun {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The last line printed on stdout: the verdict. */
  lastLine: string;
}

export function runBootstrap(args: string[], env: Record<string, string> = {}): BootstrapRun {
  const r = spawnSync('bash', [BOOTSTRAP, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000, env: { ...process.env, ...env } });
  if (r.error) throw r.error;
  const lines = r.stdout.trimEnd().split('\n');
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lastLine: lines[lines.length - 1] ?? '' };
}

/** Parses the image's passwd or group file into name → fields. */
export async function accounts(image: UbuntuRoot, file: 'passwd' | 'group'): Promise<Map<string, string[]>> {
  const text = await readFile(image.at(`/etc/${file}`), 'utf8');
  return new Map(text.split('\n').filter(Boolean).map((l) => { const f = l.split(':'); return [f[0]!, f]; }));
}

/** Owner, group (names from the image's own files) and permission bits of a path in the image. */
export async function ownership(image: UbuntuRoot, p: string): Promise<{ user: string; group: string; mode: number }> {
  const st = await lstat(image.at(p));
  const users = await accounts(image, 'passwd');
  const groups = await accounts(image, 'group');
  const user = [...users.values()].find((f) => Number(f[2]) === st.uid)?.[0] ?? `#${st.uid}`;
  const group = [...groups.values()].find((f) => Number(f[2]) === st.gid)?.[0] ?? `#${st.gid}`;
  return { user, group, mode: st.mode & 0o7777 };
}

/**
 * Everything about every path under a directory that a change would alter: type, mode, owner,
 * size, content hash or link target, inode and modification time (a file rewritten with the same
 * content still counts as changed: Asterisk re-reads files by size and mtime).
 */
export async function snapshot(dir: string, exclude: string[] = []): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string): Promise<void> {
    const abs = path.join(dir, rel);
    const st = await lstat(abs);
    let what = '';
    if (st.isSymbolicLink()) what = `-> ${await readlink(abs)}`;
    else if (st.isFile()) what = createHash('sha256').update(await readFile(abs)).digest('hex');
    out.set(rel || '.', `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.ino} ${st.mtimeMs} ${what}`);
    if (st.isDirectory()) {
      for (const name of (await readdir(abs)).sort()) {
        const child = path.join(rel, name);
        if (!exclude.includes(child)) await walk(child);
      }
    }
  }
  await walk('');
  return out;
}

/** The differences between two snapshots, as readable lines (empty when equal). */
export function snapshotDiff(before: Map<string, string>, after: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const [p, v] of after) if (before.get(p) !== v) lines.push(`${before.has(p) ? 'changed' : 'added'}: ${p}`);
  for (const p of before.keys()) if (!after.has(p)) lines.push(`removed: ${p}`);
  return lines;
}
