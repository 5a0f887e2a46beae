"""A STAND-IN for the gitlab-runner binary (imitating gitlab-runner 19.4.0, the VERSION of the
mirrored gitlabhq/gitlab-runner main at d79f3e7b), and a loopback HTTP server to download it.

The real gitlab-runner cannot be downloaded on these machines, so the host-side tests install
this POSIX sh script instead, through the same install script, from a URL on 127.0.0.1. Each
behaviour below was read from the runner's source (gitlab-runner repo paths unless marked
kardianos/ = github.com/kardianos/service, which gitlab-runner pins at v1.3.0; the mirror read
is v1.2.4, whose Linux service code is what is modelled). It talks HTTP with `nc` (busybox nc
in the lab roots: a Debian bookworm minbase has busybox but neither curl nor a standalone nc;
busybox wget cannot send DELETE and would put a --post-data token into its argv), plain
http:// only, the request piped in so that no token is ever an argument. Every call appends
its argv and its parent's command line to STANDIN_LOG (a test proves no token is an argument);
the log never holds a token. Output goes to stderr in the runner's log format
(log/runner_formatter.go: `PREFIX message-padded-to-50  key=value`), starting with the
`Runtime platform` line every command but --version prints (helpers/cli/runtime_platform.go).
Fatal errors and logrus panics exit 1 (main.go recovers a *logrus.Entry panic with exit 1).

Commands (flags also as --flag=value; unknown flags -> "Incorrect Usage", exit 1):

- `--version` / `-v`: common/version.go Extended() (`Version:      19.4.0`, ...).
- `install [--service N] [--working-directory D] [--config C] [--syslog[=false]]
  [--user U | --init-user U]` (commands/service.go runServiceInstall, service_linux.go
  setupOSServiceConfig): as root without --user/--init-user FATAL "Please specify user that will
  run gitlab-runner service"; both -> FATAL; loads config (a broken file is fatal) and saves
  common.NewConfig() when there is none (dir 0700, file 0600); picks the init system as
  kardianos/service_linux.go does (systemd, upstart, openrc, rcS, procd, else System V, which
  always matches: there is no "no service system" on Linux, so helpers/service/simple.go's
  SimpleService is never used there); only System V is modelled (else exit 3, "stand-in: ...").
  On System V it writes /etc/init.d/N (existing -> FATAL "Failed to install N: Init already
  exists: ...") from helpers/service/scripts.go sysvDebianScript when /lib/lsb/init-functions
  AND /sbin/start-stop-daemon exist (start-stop-daemon --background --make-pidfile, pid file
  /var/run/N.pid), else kardianos' own sysvScript (service_sysv_linux.go; `$cmd &`, logs in
  /var/log/N.log|.err), mode 0755, plus /etc/rc{2,3,4,5}.d/S50N and /etc/rc{0,1,6}.d/K02N
  links. The service runs `gitlab-runner run --config C [--working-directory D] --service N
  --syslog --user U` (GetServiceArguments: --working-directory defaults to the CURRENT
  directory; --syslog unless --syslog=false; --init-user becomes --chuid instead of --user).
- `uninstall`: removes /etc/init.d/N only (kardianos sysv Uninstall; no stop, links stay).
- `start` / `stop` / `restart`: `service N start|stop` (kardianos service_unix.go run());
  non-zero -> FATAL "Failed to start N: exit status X". The Debian script always exits 0.
- `status` (commands/service.go runServiceStatus + kardianos sysv Status): runs `service N
  status`; ONLY output starting with "Running" is running: prints "N: Service is running" on
  STDOUT, exit 0. Everything else goes to STDERR with exit 1: "N: Service has stopped"
  ("Stopped"), "N: the service is not installed" (other text, exit 0: what the DEBIAN
  template's `status_of_proc` prints for a RUNNING service, "GitLab Runner is running."),
  "N: exit status X" (the script failed: a stopped service under the Debian template, or no
  /etc/init.d/N: `service` says "unrecognized service").
- `register --non-interactive --url U --executor shell|docker --description|--name NAME
  [--docker-image I] [--docker-privileged] [--config C] [--leave-runner]`, token from
  `--token`/`$CI_SERVER_TOKEN` (or `--registration-token`/`$REGISTRATION_TOKEN`): commands/
  register.go. Only glrt- tokens are modelled. --tag-list/--run-untagged/--locked=false/
  --paused/--access-level/--maximum-timeout/--maintenance-note (or their REGISTER_*/
  RUNNER_TAG_LIST env) -> FATAL "Runner configuration other than name and executor ...
  reserved" (a warning, ignored, when the token came as --registration-token). Then POST
  /api/v4/runners/verify {info, token, system_id} (network/gitlab.go VerifyRunner); 403 or no
  id -> PANIC "Failed to verify the runner." (exit 1, config untouched); a missing docker image
  or bad executor after that -> DELETE /api/v4/runners/managers (unregisterRunnerFunc) + PANIC.
  Appends [[runners]] name, url, id (GitLab's), token, token_obtained_at, token_expires_at,
  executor, [runners.cache] (+ [runners.docker] image, privileged, volumes ["/cache"], ...),
  creating config.toml (dir 0700, file 0600) when missing.
- `unregister --config C (--name N | --token T | --all-runners)` (commands/unregister.go; NB
  `$CI_SERVER_TOKEN` in the environment also selects): DELETE /api/v4/runners/managers
  {token, system_id} for glrt- tokens (UnregisterRunnerManager), DELETE /api/v4/runners for
  legacy ones; anything but 204 (403 for a runner deleted on GitLab, 404 for an unknown
  system_id) -> "ERROR: Unregistering runner manager from GitLab forbidden ..." then FATAL
  "failed to unregister runner", exit 1, config.toml UNCHANGED. An unknown name -> FATAL.
  --all-runners logs failures and keeps those runners (exit 0).
- `verify [--delete] [--name N] [--url U] [--token T] [--config C]` (commands/verify.go; url and
  token deliberately NOT from the environment): POST runners/verify per selected runner; only
  a 403 counts as gone (other failures keep it). Gone runners without --delete -> FATAL
  "Failed to verify runners"; with --delete they are removed ("Updated C"); a selector that
  matches nothing -> FATAL "no runner matches the filtering parameters".
- `list [--config C]` (commands/list.go): "Listing configured runners  ConfigFile=C" then one
  line per runner WITH its token (Executor=, Token=, URL=), all on stderr.
- `run [--config C] [--working-directory D] [--service N] [--user U] [--syslog]` (commands/
  multi.go): chdir D, load config (system ID from .runner_system_id beside config.toml,
  configfile/system_id_state.go: kept if it matches ^[sr]_[0-9a-zA-Z]{12}$, else r_ + 12 random
  characters, or s_ + 12 hex from the machine id when there is one: the stand-in hashes instead
  of HMAC), reload it when its mtime changed (checked every ReloadConfigInterval, 3 s), and
  feed each runner with a token every check_interval / len(runners) (check_interval <= 0 ->
  common.CheckInterval, 3 s): POST /api/v4/jobs/request {info, token, system_id}
  (network/gitlab.go RequestJob). `concurrent` is only reported (max_builds=N). A 403 or
  network error counts against the runner; after 3 it rests 60 minutes (health_helper.go,
  DefaultUnhealthyRequestsLimit/Interval). Each poll is logged ("Checking for jobs... no
  content" is DEBUG in the real one; the stand-in always prints it). With --syslog (what the
  service passes) the log also goes to STANDIN_SYSLOG: the lab roots run no syslog daemon.
  start-stop-daemon cannot match a script to `--exec` (/proc/PID/exe is the shell), so where
  the real binary gets "process already running" a second `run` of the same service exits 1
  and hands the pid file back to the running one.

config.toml as the stand-in writes it (common/config.go field names; the real one re-encodes
the whole file, the stand-in edits text): top level `concurrent`, `check_interval`, then
`[session_server] session_timeout`, then per `[[runners]]`: `name`, `url`, `id`, `token`,
`token_obtained_at`, `token_expires_at`, `executor`, `[runners.cache]`, `[runners.docker]`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["STANDIN_LOG", "STANDIN_SCRIPT", "STANDIN_SYSLOG", "STANDIN_VERSION", "serve_file"]

STANDIN_VERSION = "19.4.0"
STANDIN_LOG = "/var/log/gitlab-runner-standin.log"
# Where `run --syslog` logs: the lab roots have no syslog daemon.
STANDIN_SYSLOG = "/var/log/gitlab-runner-standin.syslog"

STANDIN_SCRIPT = r"""#!/bin/sh
# STAND-IN for gitlab-runner 19.4.0 (archfleet tests; tests/support/runner_standin.py says
# which source file each behaviour follows). The real binary cannot be downloaded here.
set -u
VERSION=19.4.0
REVISION=d79f3e7b
BRANCH=main
STANDIN_LOG=/var/log/gitlab-runner-standin.log
STANDIN_SYSLOG=/var/log/gitlab-runner-standin.syslog
{
  printf 'argv:'
  for a in "$@"; do printf ' [%s]' "$a"; done
  printf '\n'
  if [ -r "/proc/$PPID/cmdline" ]; then
    printf 'parent: '
    tr '\0' ' ' <"/proc/$PPID/cmdline"
    printf '\n'
  fi
} >>"$STANDIN_LOG" 2>/dev/null || true

case $(uname -m) in
x86_64) goarch=amd64 ;; aarch64 | arm64) goarch=arm64 ;; armv*) goarch=arm ;;
i?86) goarch=386 ;; s390x) goarch=s390x ;; ppc64le) goarch=ppc64le ;; *) goarch=$(uname -m) ;;
esac
syslog_file=

# log/runner_formatter.go: "PREFIX" + message padded to 50 - len(prefix), then " key=value"
# for each field (sorted; callers pass them sorted). logrus writes to stderr.
log() {
  level=$1 msg=$2
  shift 2
  case $level in
  warn) p='WARNING: ' ;; error) p='ERROR: ' ;; fatal) p='FATAL: ' ;;
  panic) p='PANIC: ' ;; *) p='' ;;
  esac
  line=$(
    printf "%s%-$((50 - ${#p}))s " "$p" "$msg"
    for kv in "$@"; do printf ' %s' "$kv"; done
  )
  printf '%s\n' "$line" >&2
  if [ -n "$syslog_file" ]; then
    printf '%s gitlab-runner[%s]: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$" "$line" \
      >>"$syslog_file" 2>/dev/null || true
  fi
}
fatal() { log fatal "$@"; exit 1; }
# logrus.Panicln: main.go recovers a *logrus.Entry panic and exits 1.
panic_() { log panic "$@"; exit 1; }
runtime_platform() {
  log info "Runtime platform" "arch=$goarch" "os=linux" "pid=$$" "revision=$REVISION" \
    "version=$VERSION"
}
# commands/user_mode_warning.go
user_mode_warning() {
  if [ "$(id -u)" = 0 ]; then
    log info "Running in system-mode."
  else
    log warn "Running in user-mode."
    if [ "$1" = true ]; then
      log warn "The user-mode requires you to manually start builds processing:"
      log warn '$ gitlab-runner run'
    fi
    log warn "Use sudo for system-mode:"
    log warn '$ sudo gitlab-runner...'
  fi
  log info ""
}
bad_flag() {
  printf 'Incorrect Usage: flag provided but not defined: -%s\n\n' "${1#--}" >&2
  fatal "flag provided but not defined: -${1#--}"
}

# commands/config_unix.go: /etc/gitlab-runner as root, else ~/.gitlab-runner.
if [ "$(id -u)" = 0 ]; then
  default_config=/etc/gitlab-runner/config.toml
else
  default_config=${HOME:-/}/.gitlab-runner/config.toml
fi

# --- flags: --name value, --name=value, -n value (urfave/cli) ---------------------------------
# Usage in a loop: `split_arg "$@"` then `case $flag in --x) take; x=$v ;; esac; shift $skip`.
split_arg() {
  flag=$1 v= skip=1 inline=false next=${2-} has_next=false
  [ $# -ge 2 ] && has_next=true
  case $flag in --*=* | -?*=*) v=${flag#*=}; flag=${flag%%=*}; inline=true ;; esac
}
take() {
  if ! $inline; then
    $has_next || fatal "flag needs an argument: $flag"
    v=$next
    skip=2
  fi
}
boolean() { if $inline; then case $v in true | 1) v=true ;; *) v=false ;; esac; else v=true; fi; }

# --- config.toml (common/config.go; the stand-in edits the text, the real one re-encodes) -----
# Sets g_concurrent, g_check_interval, n_runners and r_{name,url,id,token,executor}_<i>.
load_config() {
  g_concurrent=1 g_check_interval=0 n_runners=0
  [ -f "$1" ] || return 0
  assignments=$(awk '
    function unq(v) {
      sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
      if (v ~ /^"/) {
        v = substr(v, 2); sub(/"[ \t]*(#.*)?$/, "", v)
        gsub(/\\"/, "\"", v); gsub(/\\\\/, "\\", v)
      } else sub(/[ \t]*#.*$/, "", v)
      return v
    }
    function sq(v) { gsub(/\047/, "\047\\\047\047", v); return "\047" v "\047" }
    /^[ \t]*(#.*)?$/ { next }
    /^[ \t]*\[\[runners\]\][ \t]*$/ { n++; sect = "runner"; next }
    /^[ \t]*\[/ {
      sect = (n > 0 && $0 ~ /^[ \t]*\[\[?runners\./) ? "runnersub" : "other"; next
    }
    {
      eq = index($0, "="); if (!eq) next
      k = substr($0, 1, eq - 1); gsub(/[ \t"]/, "", k); v = unq(substr($0, eq + 1))
      if (sect == "" && k ~ /^(concurrent|check_interval)$/) print "g_" k "=" sq(v)
      else if (sect == "runner" && k ~ /^(name|url|id|token|executor)$/)
        print "r_" k "_" n "=" sq(v)
    }
    END { print "n_runners=" n + 0 }' "$1") || return 1
  eval "$assignments"
}
runner_var() { eval "printf '%s' \"\${r_$1_$2-}\""; }

# Writes config.toml without the [[runners]] tables whose 1-based positions are in $1 (" 2 5 ").
drop_runners() {
  tmp="$2.standin.$$"
  DROP=$1 awk '
    BEGIN { drop = 0 }
    /^[ \t]*\[\[runners\]\][ \t]*$/ { n++; inrun = 1; drop = index(ENVIRON["DROP"], " " n " ") > 0 }
    /^[ \t]*\[/ && !/^[ \t]*\[\[?runners[].]/ { inrun = 0; drop = 0 }
    !(inrun && drop) { print }' "$2" >"$tmp" || { rm -f "$tmp"; return 1; }
  # os.WriteFile: same file, same mode.
  cat "$tmp" >"$2"
  rm -f "$tmp"
}

toml_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
json_str() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }
# common.NewConfig() as BurntSushi/toml encodes it (a zero shutdown_timeout is omitempty);
# configfile Save: directory 0700 and file 0600 when it creates them.
new_config() {
  [ -d "$(dirname "$1")" ] || mkdir -p -m 700 "$(dirname "$1")" || return 1
  (umask 077 && printf 'concurrent = 1\ncheck_interval = 0\n\n[session_server]\n' >"$1") &&
    printf '  session_timeout = 1800\n' >>"$1"
}

# commands/internal/configfile/system_id_state.go: .runner_system_id beside config.toml,
# ^[sr]_[0-9a-zA-Z]{12}$; s_ + HMAC-SHA256(machine-id, "gitlab-runner")[:12] when a machine id
# exists (the stand-in: sha256 of both; no HMAC tool here), else r_ + 12 random characters.
system_id_for() {
  idfile=$(dirname "$1")/.runner_system_id
  if [ -f "$idfile" ]; then
    sid=$(tr -d ' \t\r\n' <"$idfile")
    if printf '%s' "$sid" | grep -Eq '^[sr]_[0-9a-zA-Z]{12}$'; then
      printf '%s' "$sid"
      return
    fi
  fi
  mid=
  for f in /var/lib/dbus/machine-id /etc/machine-id; do
    [ -s "$f" ] && { mid=$(tr -d ' \n' <"$f"); break; }
  done
  if [ -n "$mid" ]; then
    sid=s_$(printf '%s%s' "$mid" gitlab-runner | sha256sum | cut -c1-12)
  else
    sid=r_$(tr -dc 'a-zA-Z0-9' </dev/urandom 2>/dev/null | head -c 12)
  fi
  log info "Created missing unique system ID" "system_id=$sid"
  if ! { mkdir -p -m 700 "$(dirname "$idfile")" &&
    (umask 077 && printf '%s' "$sid" >"$idfile"); }; then
    log warn "Couldn't save new system ID on state file." "state_file=$idfile" "system_id=$sid"
  fi
  printf '%s' "$sid"
}

# --- HTTP (network/gitlab.go) over `nc` (busybox nc in the lab roots): the request, tokens and
# all, goes through a pipe, never into an argv. Plain http:// only. Sets http_status (-100 =
# network/client error, as network/gitlab.go's clientError), http_status_text and http_body.
nc_cmd() {
  if command -v nc >/dev/null 2>&1; then echo nc
  elif command -v busybox >/dev/null 2>&1; then echo "busybox nc"
  fi
}
http() {
  method=$1 base=${2%/} path=$3 body=$4
  http_status=-100 http_status_text= http_body=
  case $base in
  http://*) ;;
  *) http_status_text="the stand-in speaks plain http:// only"; return 0 ;;
  esac
  hostport=${base#http://}
  hostport=${hostport%%/*}
  prefix=${base#http://"$hostport"}
  host=${hostport%:*} port=${hostport##*:}
  [ "$port" = "$hostport" ] && port=80
  nc=$(nc_cmd)
  [ -n "$nc" ] || { http_status_text="no nc on this host"; return 0; }
  length=$(printf '%s' "$body" | wc -c)
  response=$(
    {
      printf '%s %s/api/v4/%s HTTP/1.0\r\n' "$method" "$prefix" "$path"
      printf 'Host: %s\r\nUser-Agent: gitlab-runner %s (stand-in)\r\n' "$hostport" "$VERSION"
      printf 'Accept: application/json\r\nContent-Type: application/json\r\n'
      printf 'Content-Length: %s\r\nConnection: close\r\n\r\n%s' "$length" "$body"
    } | $nc "$host" "$port" 2>/dev/null
  ) || true
  first=$(printf '%s\n' "$response" | head -n1 | tr -d '\r')
  case $first in
  HTTP/*) ;;
  *) http_status_text="no HTTP answer from $hostport"; return 0 ;;
  esac
  http_status_text=${first#* }
  http_status=${http_status_text%% *}
  http_body=$(printf '%s\n' "$response" | sed '1,/^\r\{0,1\}$/d')
}
correlation_id() { od -An -N8 -tx1 /dev/urandom | tr -d ' \n'; }
# helpers/shorten_token.go: prefix glrt-/t1_ stripped, 9 characters.
short_token() { printf '%s' "$1" | sed -E 's/^glrt-(t[123]_)?|^t[123]_|^glrtr-//' | cut -c1-9; }
info_json() {
  printf '{"name":"gitlab-runner","version":"%s","revision":"%s","platform":"linux",' \
    "$VERSION" "$REVISION"
  printf '"architecture":"%s","executor":"%s"}' "$goarch" "$(json_str "$1")"
}

# network/gitlab.go VerifyRunner: POST runners/verify {info, token, system_id}; 200 -> the
# response (id, token, token_expires_at); 403 -> nil; anything else -> an empty response.
# Sets verify_result: ok / forbidden / failed, verify_id, verify_expires.
verify_runner() { # url token system_id executor
  short=$(short_token "$2")
  cid=$(correlation_id)
  http POST "$1" runners/verify \
    "{\"info\":$(info_json "$4"),\"token\":\"$(json_str "$2")\",\"system_id\":\"$3\"}"
  verify_id=0 verify_expires=0001-01-01T00:00:00Z
  case $http_status in
  200)
    case $2 in glrt-*) what="is valid" ;; *) what="is alive" ;; esac
    log info "Verifying runner... $what" "correlation_id=$cid" "runner=$short"
    verify_result=ok
    verify_id=$(printf '%s' "$http_body" | sed -n 's/.*"id": *\([0-9][0-9]*\).*/\1/p' | head -n1)
    [ -n "$verify_id" ] || verify_id=0
    expires=$(printf '%s' "$http_body" |
      sed -n 's/.*"token_expires_at": *"\([^"]*\)".*/\1/p' | sed 's/\.[0-9]*//')
    [ -n "$expires" ] && verify_expires=$expires
    ;;
  403)
    case $2 in
    glrt-*) log info "Verifying runner... is not valid" "correlation_id=$cid" "runner=$short" ;;
    *) log error "Verifying runner... is removed" "correlation_id=$cid" "runner=$short" \
      "status=$http_status_text" ;;
    esac
    verify_result=forbidden
    ;;
  -100)
    log error "Verifying runner... client error" "correlation_id=$cid" "runner=$short" \
      "status=$http_status_text"
    verify_result=failed
    ;;
  *)
    log error "Verifying runner... failed" "correlation_id=$cid" "runner=$short" \
      "status=$http_status_text"
    verify_result=failed
    ;;
  esac
}

# network/gitlab.go UnregisterRunnerManager (glrt- tokens: DELETE runners/managers {token,
# system_id}) and UnregisterRunner (legacy tokens: DELETE runners {token}); true only on 204.
unregister_on_gitlab() { # url token system_id
  short=$(short_token "$2")
  cid=$(correlation_id)
  case $2 in
  glrt-*)
    what="Unregistering runner manager from GitLab"
    http DELETE "$1" runners/managers "{\"token\":\"$(json_str "$2")\",\"system_id\":\"$3\"}"
    ;;
  *)
    what="Unregistering runner from GitLab"
    http DELETE "$1" runners "{\"token\":\"$(json_str "$2")\"}"
    ;;
  esac
  case $http_status in
  204) log info "$what succeeded" "correlation_id=$cid" "runner=$short"; return 0 ;;
  403) outcome=forbidden ;;
  -100) outcome="client error" ;;
  *) outcome=failed ;;
  esac
  log error "$what $outcome" "correlation_id=$cid" "runner=$short" "status=$http_status_text"
  return 1
}

# --- register (commands/register.go) ----------------------------------------------------------
DOC_URL=https://docs.gitlab.com/ci/runners/new_creation_workflow/
DOC_URL="$DOC_URL#changes-to-the-gitlab-runner-register-command-syntax"
RESERVED_FATAL="Runner configuration other than name and executor configuration is reserved\
 (specifically --locked, --access-level, --run-untagged, --maximum-timeout, --paused,\
 --tag-list, and --maintenance-note) and cannot be specified when registering with a runner\
 authentication token. This configuration is specified on the GitLab server. Please try again\
 without specifying any of those arguments. For more information, see $DOC_URL"
LEGACY_WARNING="You have specified an authentication token in the legacy parameter\
 --registration-token. This has triggered the 'legacy-compatible registration process' which\
 has resulted in the following command line parameters being ignored: --locked,\
 --access-level, --run-untagged, --maximum-timeout, --paused, --tag-list, and\
 --maintenance-note. For more information, see ${DOC_URL}These parameters and the\
 legacy-compatible registration process will be removed in a future GitLab Runner release. "
cmd_register() {
  config=${CONFIG_FILE:-$default_config}
  url=${CI_SERVER_URL-} token=${CI_SERVER_TOKEN-} regtoken=${REGISTRATION_TOKEN-}
  name=${RUNNER_NAME:-$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)}
  executor=${RUNNER_EXECUTOR-} image=${DOCKER_IMAGE-}
  privileged=${DOCKER_PRIVILEGED:-false} noninteractive=${REGISTER_NON_INTERACTIVE:-false}
  leave=${REGISTER_LEAVE_RUNNER:-false} taglist=${RUNNER_TAG_LIST-}
  locked=${REGISTER_LOCKED:-true} rununtagged=${REGISTER_RUN_UNTAGGED:-false}
  paused=${REGISTER_PAUSED:-false} access=${REGISTER_ACCESS_LEVEL-}
  maxtimeout=${REGISTER_MAXIMUM_TIMEOUT:-0} note=${REGISTER_MAINTENANCE_NOTE-}
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $flag in
    --config | -c) take; config=$v ;;
    --url | -u) take; url=$v ;;
    --token | -t) take; token=$v ;;
    --registration-token | -r) take; regtoken=$v ;;
    --description | --name) take; name=$v ;;
    --executor) take; executor=$v ;;
    --docker-image) take; image=$v ;;
    --docker-privileged) boolean; privileged=$v ;;
    --non-interactive | -n) boolean; noninteractive=$v ;;
    --leave-runner) boolean; leave=$v ;;
    --tag-list) take; taglist=$v ;;
    --locked) boolean; locked=$v ;;
    --run-untagged) boolean; rununtagged=$v ;;
    --paused) boolean; paused=$v ;;
    --access-level) take; access=$v ;;
    --maximum-timeout) take; maxtimeout=$v ;;
    --maintenance-note) take; note=$v ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  user_mode_warning true
  case $access in '' | not_protected | ref_protected) ;; *)
    panic_ "Given access-level is not valid. Refer to gitlab-runner register -h for the\
 correct options." ;;
  esac
  $noninteractive || panic_ "The stand-in cannot prompt; use --non-interactive"
  load_config "$config" || panic_ "decoding configuration file: $config: unreadable TOML"
  system_id=$(system_id_for "$config")
  [ -n "$url" ] || panic_ "The url needs to be entered"
  legacy_flag=false
  if [ -z "$token" ]; then
    [ -n "$regtoken" ] || panic_ "The registration-token needs to be entered"
    token=$regtoken
    legacy_flag=true
  fi
  case $token in
  glrt-*) ;;
  *) panic_ "stand-in: registration tokens (legacy POST /api/v4/runners) are not modelled" ;;
  esac
  i=1
  while [ "$i" -le "$n_runners" ]; do
    [ "$(runner_var token "$i")" = "$token" ] &&
      log warn "A runner with this system ID and token has already been registered."
    i=$((i + 1))
  done
  # ensureServerConfigArgsEmpty
  if ! { [ "$locked" = true ] && [ -z "$access" ] && [ "$rununtagged" = false ] &&
    [ "$maxtimeout" = 0 ] && [ "$paused" = false ] && [ -z "$taglist" ] && [ -z "$note" ]; }; then
    if $legacy_flag; then
      log warn "$LEGACY_WARNING"
    else
      fatal "$RESERVED_FATAL"
    fi
  fi
  verify_runner "$url" "$token" "$system_id" "$executor"
  { [ "$verify_result" = ok ] && [ "$verify_id" != 0 ]; } || panic_ "Failed to verify the runner."
  obtained=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  # From here a panic unregisters the runner manager again (unregisterRunnerFunc).
  undo() {
    $leave || unregister_on_gitlab "$url" "$token" "$system_id" || true
    panic_ "$1"
  }
  case $executor in
  shell) ;;
  docker | docker+machine | docker-autoscaler)
    [ -n "$image" ] || undo "The docker-image needs to be entered" ;;
  '') undo "The executor needs to be entered" ;;
  custom | ssh | parallels | virtualbox | kubernetes | instance | docker-windows)
    undo "stand-in: executor $executor is not modelled" ;;
  *) undo "Invalid executor specified" ;;
  esac
  if [ ! -f "$config" ]; then
    new_config "$config" || panic_ "saving the file: cannot write $config"
  fi
  {
    printf '\n[[runners]]\n'
    printf '  name = "%s"\n' "$(toml_str "$name")"
    printf '  url = "%s"\n' "$(toml_str "$url")"
    printf '  id = %s\n' "$verify_id"
    printf '  token = "%s"\n' "$(toml_str "$token")"
    printf '  token_obtained_at = %s\n' "$obtained"
    printf '  token_expires_at = %s\n' "$verify_expires"
    printf '  executor = "%s"\n' "$executor"
    printf '  [runners.cache]\n    MaxUploadedArchiveSize = 0\n'
    if [ "$executor" != shell ]; then
      printf '  [runners.docker]\n    tls_verify = false\n    image = "%s"\n' "$(toml_str "$image")"
      printf '    privileged = %s\n    disable_entrypoint_overwrite = false\n' "$privileged"
      printf '    oom_kill_disable = false\n    disable_cache = false\n'
      printf '    volumes = ["/cache"]\n    shm_size = 0\n    network_mtu = 0\n'
    fi
  } >>"$config" || panic_ "saving the file: cannot write $config"
  log info "Runner registered successfully. Feel free to start it, but if it's running already\
 the config should be automatically reloaded!"
  log info "Configuration (with the authentication token) was saved in \"$config\""
}

# --- unregister (commands/unregister.go) -------------------------------------------------------
cmd_unregister() {
  config=${CONFIG_FILE:-$default_config}
  name= token=${CI_SERVER_TOKEN-} all=false
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $flag in
    --config | -c) take; config=$v ;;
    --name | -n) take; name=$v ;;
    --token | -t) take; token=$v ;;
    --url | -u) take ;;
    --all-runners) boolean; all=$v ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  user_mode_warning false
  load_config "$config" || fatal "failed to unregister runner" "error=decoding configuration file"
  system_id=$(system_id_for "$config")
  drop=' ' failed=
  if [ "$all" = true ]; then
    log warn "Unregistering all runners"
    i=1
    while [ "$i" -le "$n_runners" ]; do
      if unregister_on_gitlab "$(runner_var url "$i")" "$(runner_var token "$i")" "$system_id"; then
        drop="$drop$i "
      else
        failed="${failed:+$failed\n}failed to unregister runner \"$(runner_var name "$i")\""
      fi
      i=$((i + 1))
    done
    [ -n "$failed" ] && log error "Failed to unregister runners" "error=$(printf "$failed")"
  else
    [ -n "$name" ] || [ -n "$token" ] ||
      fatal "failed to unregister runner" \
        "error=unregister runner: at least one of --name or --token must be specified"
    found=0 i=1
    while [ "$i" -le "$n_runners" ]; do
      rn=$(runner_var name "$i") rt=$(runner_var token "$i")
      if { [ -z "$name" ] || [ "$rn" = "$name" ]; } &&
        { [ -z "$token" ] || [ "$rt" = "$token" ]; }; then
        found=$i
        break
      fi
      i=$((i + 1))
    done
    if [ "$found" = 0 ]; then
      if [ -n "$name" ] && [ -n "$token" ]; then
        why="could not find a runner with the Name '$name' and Token"
      elif [ -n "$token" ]; then
        why="could not find a runner with the token"
      else
        why="could not find a runner with the name '$name'"
      fi
      fatal "failed to unregister runner" \
        "error=unregister runner: get runner by token or name: $why"
    fi
    unregister_on_gitlab "$(runner_var url "$found")" "$(runner_var token "$found")" "$system_id" ||
      fatal "failed to unregister runner" \
        "error=unregister runner: failed to unregister runner \"$name\""
    drop=" $found "
  fi
  [ "$drop" = ' ' ] && return 0
  drop_runners "$drop" "$config" || fatal "Failed to update $config"
  log info "Updated $config"
}

# --- verify (commands/verify.go) --------------------------------------------------------------
cmd_verify() {
  config=${CONFIG_FILE:-$default_config}
  name= url= token= delete=false
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $flag in
    --config | -c) take; config=$v ;;
    --name | -n) take; name=$v ;;
    --url | -u) take; url=$v ;;
    --token | -t) take; token=$v ;;
    --delete) boolean; delete=$v ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  user_mode_warning true
  load_config "$config" || fatal "decoding configuration file: $config"
  system_id=$(system_id_for "$config")
  selector=false
  { [ -n "$name" ] || [ -n "$url" ] || [ -n "$token" ]; } && selector=true
  drop=' ' verified=0 i=1
  while [ "$i" -le "$n_runners" ]; do
    rn=$(runner_var name "$i") ru=$(runner_var url "$i") rt=$(runner_var token "$i")
    match=false
    if ! $selector || [ "$rn" = "$name" ]; then
      match=true
    elif { [ -n "$url" ] || [ -n "$token" ]; } &&
      { [ -z "$url" ] || [ "${ru%/}" = "${url%/}" ]; } &&
      { [ -z "$token" ] || [ "$rt" = "$token" ]; }; then
      match=true # RunnerCredentials.SameAs
    fi
    if $match; then
      verified=$((verified + 1))
      verify_runner "$ru" "$rt" "$system_id" "$(runner_var executor "$i")"
      [ "$verify_result" = forbidden ] && drop="$drop$i "
    fi
    i=$((i + 1))
  done
  $selector && [ "$verified" = 0 ] && fatal "no runner matches the filtering parameters"
  [ "$drop" = ' ' ] && return 0
  [ "$delete" = true ] || fatal "Failed to verify runners"
  drop_runners "$drop" "$config" || fatal "Failed to update $config"
  log info "Updated $config"
}

# --- list (commands/list.go): names WITH their tokens, on stderr, as the real one ------------
cmd_list() {
  config=${CONFIG_FILE:-$default_config}
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $flag in
    --config | -c) take; config=$v ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  load_config "$config" || { log warn "decoding configuration file: $config"; return 0; }
  system_id_for "$config" >/dev/null
  log info "Listing configured runners" "ConfigFile=$config"
  i=1
  while [ "$i" -le "$n_runners" ]; do
    log info "$(runner_var name "$i")" "Executor=$(runner_var executor "$i")" \
      "Token=$(runner_var token "$i")" "URL=$(runner_var url "$i")"
    i=$((i + 1))
  done
}

# --- service control (commands/service.go + kardianos/service) --------------------------------
# service_linux.go: the first system whose detect() is true; System V always matches last.
service_platform() {
  if command -v rpm-ostree >/dev/null 2>&1 || [ -e /run/systemd/system ] ||
    { command -v systemctl >/dev/null 2>&1 &&
      [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; }; then
    echo linux-systemd
  elif [ -e /sbin/upstart-udev-bridge ] ||
    { [ -e /sbin/initctl ] &&
      /sbin/initctl --version 2>/dev/null | grep -q 'initctl (upstart'; }; then
    echo linux-upstart
  elif command -v openrc-init >/dev/null 2>&1 ||
    { [ -e /etc/inittab ] && grep -q '::sysinit:.*openrc.*sysinit' /etc/inittab; }; then
    echo linux-openrc
  elif [ -e /etc/init.d/rcS ] && ! command -v service >/dev/null 2>&1 &&
    [ -e /etc/inittab ] && grep -q '::sysinit:.*rcS' /etc/inittab; then
    echo linux-rcs
  elif command -v procd >/dev/null 2>&1; then
    echo linux-procd
  else
    echo unix-systemv
  fi
}
# kardianos tf "cmd": "..." with " escaped.
cmdq() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/\\"/g')"; }

# helpers/service/scripts.go sysvDebianScript, rendered as text/template would.
debian_script() { # path name description username workdir args...
  path=$1 sname=$2 desc=$3 uname=$4 wd=$5
  shift 5
  args=
  for a in "$@"; do args="$args $(cmdq "$a")"; done
  chuid=
  [ -n "$uname" ] && chuid=" --chuid $(cmdq "$uname")"
  chdir=
  [ -n "$wd" ] && chdir="--chdir $(cmdq "$wd")"
  cat <<EOF
#! /bin/bash

### BEGIN INIT INFO
# Provides:          $path
# Required-Start:    \$local_fs \$remote_fs \$network \$syslog
# Required-Stop:     \$local_fs \$remote_fs \$network \$syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: $sname
# Description:       $desc
### END INIT INFO

DESC="$desc"
USER="$uname"
NAME="$sname"
PIDFILE="/var/run/\$NAME.pid"

# Read configuration variable file if it is present
[ -r /etc/default/\$NAME ] && . /etc/default/\$NAME

# Define LSB log_* functions.
. /lib/lsb/init-functions

## Check to see if we are running as root first.
if [ "\$(id -u)" != "0" ]; then
    echo "This script must be run as root"
    exit 1
fi

do_start() {
  start-stop-daemon --start \\
     \\
    $chdir \\
    $chuid \\
    --pidfile "\$PIDFILE" \\
    --background \\
    --make-pidfile \\
    --exec $path -- $args
}

do_stop() {
  start-stop-daemon --stop \\
    $chuid \\
    --pidfile "\$PIDFILE" \\
    --quiet
}

case "\$1" in
  start)
    log_daemon_msg "Starting \$DESC"
    do_start
    log_end_msg \$?
    ;;
  stop)
    log_daemon_msg "Stopping \$DESC"
    do_stop
    log_end_msg \$?
    ;;
  restart)
    \$0 stop
    \$0 start
    ;;
  status)
    status_of_proc -p "\$PIDFILE" "\$DAEMON" "\$DESC"
    ;;
  *)
    echo "Usage: sudo service \$0 {start|stop|restart|status}" >&2
    exit 1
    ;;
esac

exit 0
EOF
}

# kardianos/service service_sysv_linux.go sysvScript (used when SysvScript() is ""), rendered.
generic_sysv_script() { # path name description workdir args...
  path=$1 sname=$2 desc=$3 wd=$4
  shift 4
  cmd=$path
  for a in "$@"; do cmd="$cmd $(cmdq "$a")"; done
  cdline=
  [ -n "$wd" ] && cdline="cd '$wd'"
  cat <<EOF
#!/bin/sh
# For RedHat and cousins:
# chkconfig: - 99 01
# description: $desc
# processname: $path

### BEGIN INIT INFO
# Provides:          $path
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: $sname
# Description:       $desc
### END INIT INFO

cmd="$cmd"

name=\$(basename \$(readlink -f \$0))
pid_file="/var/run/\$name.pid"
stdout_log="/var/log/\$name.log"
stderr_log="/var/log/\$name.err"

[ -e /etc/sysconfig/\$name ] && . /etc/sysconfig/\$name

get_pid() {
    cat "\$pid_file"
}

is_running() {
    [ -f "\$pid_file" ] && cat /proc/\$(get_pid)/stat > /dev/null 2>&1
}

case "\$1" in
    start)
        if is_running; then
            echo "Already started"
        else
            echo "Starting \$name"
            $cdline
            \$cmd >> "\$stdout_log" 2>> "\$stderr_log" &
            echo \$! > "\$pid_file"
            if ! is_running; then
                echo "Unable to start, see \$stdout_log and \$stderr_log"
                exit 1
            fi
        fi
    ;;
    stop)
        if is_running; then
            echo -n "Stopping \$name.."
            kill \$(get_pid)
            for i in \$(seq 1 10)
            do
                if ! is_running; then
                    break
                fi
                echo -n "."
                sleep 1
            done
            echo
            if is_running; then
                echo "Not stopped; may still be shutting down or shutdown may have failed"
                exit 1
            else
                echo "Stopped"
                if [ -f "\$pid_file" ]; then
                    rm "\$pid_file"
                fi
            fi
        else
            echo "Not running"
        fi
    ;;
    restart)
        \$0 stop
        if is_running; then
            echo "Unable to stop, will not attempt to start"
            exit 1
        fi
        \$0 start
    ;;
    status)
        if is_running; then
            echo "Running"
        else
            echo "Stopped"
            exit 1
        fi
    ;;
    *)
    echo "Usage: \$0 {start|stop|restart|status}"
    exit 1
    ;;
esac
exit 0
EOF
}

# `service NAME ACTION` as kardianos' run()/runWithOutput() (service_unix.go); prints
# kardianos' error text on failure.
run_service() { # action name capture(true/false)
  if ! command -v service >/dev/null 2>&1; then
    svc_err="\"service\" failed: exec: \"service\": executable file not found in \$PATH"
    return 1
  fi
  if [ "$3" = true ]; then
    svc_out=$(service "$2" "$1" 2>/dev/null) && return 0
  else
    service "$2" "$1" >/dev/null 2>&1 && return 0
  fi
  svc_err="exit status $?"
  return 1
}

cmd_service() { # install|uninstall|start|stop|restart|status args...
  action=$1
  shift
  sname=gitlab-runner wd=$(pwd) config=$default_config syslog= user= inituser= userset=false
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $action:$flag in
    *:--service | *:-n) take; sname=$v ;;
    install:--working-directory | install:-d) take; wd=$v ;;
    install:--config | install:-c) take; config=$v ;;
    install:--syslog) boolean; syslog=$v ;;
    install:--user | install:-u) [ "$(id -u)" = 0 ] || bad_flag "$flag"; take; user=$v ;;
    install:--init-user | install:-i) [ "$(id -u)" = 0 ] || bad_flag "$flag"; take; inituser=$v ;;
    *:--user-service) [ "$(id -u)" != 0 ] || bad_flag "$flag"; boolean ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  [ -n "$user" ] && [ -n "$inituser" ] &&
    fatal "Only one of 'user' or 'init-user' can be specified."
  platform=$(service_platform)
  [ "$platform" = unix-systemv ] ||
    { echo "stand-in: only System V is modelled; this host looks like $platform" >&2; exit 3; }
  case $action in
  install)
    [ -z "$user" ] && [ -z "$inituser" ] && [ "$(id -u)" = 0 ] &&
      fatal "Please specify user that will run gitlab-runner service"
    # runServiceInstall: load (fails on a broken file), save a fresh one when there was none.
    if [ -f "$config" ]; then
      load_config "$config" || fatal "decoding configuration file: $config"
    else
      new_config "$config" || fatal "saving the file: cannot write $config"
    fi
    initfile=/etc/init.d/$sname
    [ -e "$initfile" ] && fatal "Failed to install $sname: Init already exists: $initfile"
    self=$(readlink -f "$0")
    # GetServiceArguments + setupOSServiceConfig (service_linux.go): run --config C
    # [--working-directory D] --service N [--syslog] [--user U]; --init-user -> --chuid.
    set -- run --config "$config"
    [ -n "$wd" ] && set -- "$@" --working-directory "$wd"
    set -- "$@" --service "$sname"
    [ "$syslog" != false ] && set -- "$@" --syslog
    [ -n "$user" ] && set -- "$@" --user "$user"
    if [ -e /lib/lsb/init-functions ] && [ -e /sbin/start-stop-daemon ]; then
      debian_script "$self" "$sname" "GitLab Runner" "$inituser" "$wd" "$@" >"$initfile" ||
        fatal "Failed to install $sname: open $initfile: cannot create"
    elif [ -e /etc/rc.d/init.d/functions ]; then
      echo "stand-in: the Red Hat sysv template is not modelled" >&2
      exit 3
    else
      generic_sysv_script "$self" "$sname" "GitLab Runner" "$wd" "$@" >"$initfile" ||
        fatal "Failed to install $sname: open $initfile: cannot create"
    fi
    chmod 755 "$initfile"
    for l in 2 3 4 5; do ln -s "$initfile" "/etc/rc$l.d/S50$sname" 2>/dev/null; done
    for l in 0 1 6; do ln -s "$initfile" "/etc/rc$l.d/K02$sname" 2>/dev/null; done
    ;;
  uninstall)
    rm "/etc/init.d/$sname" 2>/dev/null ||
      fatal "Failed to uninstall $sname: remove /etc/init.d/$sname: no such file or directory"
    ;;
  start | stop)
    run_service "$action" "$sname" false || fatal "Failed to $action $sname: $svc_err"
    ;;
  restart)
    { run_service stop "$sname" false && sleep 0.05 && run_service start "$sname" false; } ||
      fatal "Failed to restart $sname: $svc_err"
    ;;
  status)
    # runServiceStatus: stdout + exit 0 only for "Running..."; else stderr + exit 1.
    if run_service status "$sname" true; then
      case $svc_out in
      Running*) printf '%s: %s\n' "$sname" "Service is running"; return 0 ;;
      Stopped*) printf '%s: %s\n' "$sname" "Service has stopped" >&2 ;;
      *) printf '%s: %s\n' "$sname" "the service is not installed" >&2 ;;
      esac
    else
      printf '%s: %s\n' "$sname" "$svc_err" >&2
    fi
    exit 1
    ;;
  esac
}

# --- run (commands/multi.go): the service process ---------------------------------------------
cmd_run() {
  config=${CONFIG_FILE:-$default_config}
  wd= sname=gitlab-runner user= syslog=${LOG_SYSLOG:-false}
  while [ $# -gt 0 ]; do
    split_arg "$@"
    case $flag in
    --config | -c) take; config=$v ;;
    --working-directory | -d) take; wd=$v ;;
    --service | -n) take; sname=$v ;;
    --user | -u) take; user=$v ;;
    --syslog) boolean; syslog=$v ;;
    --listen-address) take ;;
    *) bad_flag "$flag" ;;
    esac
    shift $skip
  done
  # No syslog daemon in the lab roots: this file stands in for it (log/system_logger.go).
  [ "$syslog" = true ] && syslog_file=$STANDIN_SYSLOG
  # start-stop-daemon cannot match a script's /proc/PID/exe to --exec, so it would start a
  # second copy where the real binary gets "process already running": refuse here instead,
  # and give the pid file back to the copy that runs.
  lock=/var/run/gitlab-runner-standin.$sname.run
  if [ -f "$lock" ]; then
    old=$(cat "$lock")
    if [ -n "$old" ] && [ "$old" != $$ ] && kill -0 "$old" 2>/dev/null &&
      tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -q ' run '; then
      [ "$(cat "/var/run/$sname.pid" 2>/dev/null)" = $$ ] && echo "$old" >"/var/run/$sname.pid"
      exit 1
    fi
  fi
  echo $$ >"$lock"
  trap 'rm -f "$lock"; kill $sleeper 2>/dev/null; exit 0' TERM INT
  trap 'rm -f "$lock"' EXIT
  sleeper=
  log info "Starting multi-runner from $config..." "builds=0" "max_builds=0"
  user_mode_warning false
  if [ -n "$wd" ]; then
    cd "$wd" 2>/dev/null || fatal "Service run failed" "error=chdir $wd: no such file or directory"
  fi
  # The file's modification time with its nanoseconds, taken BEFORE reading it, as
  # common/config.go LoadConfig keeps info.ModTime() and commands/multi.go compares it
  # (time.Time, ns): a second write within the same second must not be missed.
  modtime() { stat -c %y "$config" 2>/dev/null || echo 0; }
  reload() {
    seen=$(modtime)
    if load_config "$config"; then
      system_id=$(system_id_for "$config")
      mtime=$seen
      log info "Configuration loaded" "builds=0" "max_builds=$g_concurrent"
      # checkConfigConcurrency
      [ "$g_concurrent" -lt "$n_runners" ] 2>/dev/null &&
        log warn "CONFIGURATION: Long polling issues detected." "builds=0" \
          "max_builds=$g_concurrent"
    else
      log error "Failed to load config decoding configuration file" "builds=0" \
        "max_builds=$g_concurrent"
    fi
  }
  mtime=0
  reload
  checked=$(date +%s)
  nap() { sleep "$1" & sleeper=$!; wait "$sleeper"; sleeper=; }
  while :; do
    # updateConfig: every ReloadConfigInterval (3 s) reload when the file changed.
    now=$(date +%s)
    if [ $((now - checked)) -ge 3 ]; then
      checked=$now
      [ "$(modtime)" != "$mtime" ] && reload
    fi
    # GetCheckInterval: check_interval seconds when > 0, else common.CheckInterval (3 s).
    interval=$g_check_interval
    [ "$interval" -gt 0 ] 2>/dev/null || interval=3
    if [ "$n_runners" = 0 ]; then
      nap "$interval"
      continue
    fi
    # feedRunners: one runner every interval / len(runners).
    step=$(awk -v a="$interval" -v b="$n_runners" 'BEGIN { printf "%.3f", a / b }')
    i=1
    while [ "$i" -le "$n_runners" ]; do
      poll "$i"
      nap "$step"
      i=$((i + 1))
    done
  done
}

# network/gitlab.go RequestJob: POST jobs/request {info, token, system_id}; 201 job, 204 no
# job, 403 forbidden; health_helper.go: after 3 failed requests a runner rests 60 minutes.
poll() {
  i=$1
  token=$(runner_var token "$i")
  [ -n "$(printf '%s' "$token" | tr -d ' \t')" ] || return 0
  short=$(short_token "$token")
  eval "failures=\${hf_$i:-0} last=\${hl_$i:-0}"
  now=$(date +%s)
  if [ "$failures" -ge 3 ]; then
    [ $((now - last)) -gt 3600 ] || return 0
    log warn "Runner \"$short\" is not healthy, but check for a new job will be forced!" \
      "unhealthy_interval=1h0m0s" "unhealthy_requests=$failures" "unhealthy_requests_limit=3"
    eval "hf_$i=0 hl_$i=$now"
  fi
  cid=$(correlation_id)
  info=$(info_json "$(runner_var executor "$i")")
  http POST "$(runner_var url "$i")" jobs/request \
    "{\"info\":$info,\"token\":\"$(json_str "$token")\",\"system_id\":\"$system_id\"}"
  healthy=true
  case $http_status in
  201)
    log error "Checking for jobs... received, but the stand-in cannot run jobs" \
      "builds=0" "correlation_id=$cid" "max_builds=$g_concurrent" "runner=$short"
    ;;
  204)
    # The real runner logs this one at debug level.
    log info "Checking for jobs... no content" "builds=0" "correlation_id=$cid" \
      "max_builds=$g_concurrent" "runner=$short" "status=$http_status_text"
    ;;
  403)
    log error "Checking for jobs... forbidden" "builds=0" "correlation_id=$cid" \
      "max_builds=$g_concurrent" "runner=$short" "status=$http_status_text"
    healthy=false
    ;;
  503)
    log warn "Checking for jobs... GitLab instance currently unavailable" "builds=0" \
      "correlation_id=$cid" "max_builds=$g_concurrent" "runner=$short" "status=$http_status_text"
    ;;
  -100)
    log error "Checking for jobs... client error" "builds=0" "correlation_id=$cid" \
      "max_builds=$g_concurrent" "runner=$short" "status=$http_status_text"
    healthy=false
    ;;
  *)
    log warn "Checking for jobs... failed" "builds=0" "correlation_id=$cid" \
      "max_builds=$g_concurrent" "runner=$short" "status=$http_status_text"
    ;;
  esac
  if $healthy; then
    eval "hf_$i=0 hl_$i=$now"
  else
    eval "hf_$i=$((failures + 1)) hl_$i=$now"
  fi
}

# --- main (main.go) ----------------------------------------------------------------------------
while [ $# -gt 0 ]; do
  case $1 in
  --debug | --log-level=* | --log-format=*) shift ;;
  --log-level | --log-format) shift 2 ;;
  *) break ;;
  esac
done
command=${1:-}
[ $# -gt 0 ] && shift
case $command in
--version | -v)
  # common/version.go Extended(); urfave/cli prints it before app.Before (no platform line).
  printf 'Version:      %s\nGit revision: %s\nGit branch:   %s\n' "$VERSION" "$REVISION" "$BRANCH"
  printf 'GO version:   go1.24.6\nBuilt:        2026-08-22T00:44:03Z\n'
  printf 'OS/Arch:      linux/%s\n' "$goarch"
  exit 0
  ;;
'' | help | --help | -h)
  echo "gitlab-runner (stand-in): install uninstall start stop restart status register" \
    "unregister verify list run" >&2
  exit 0
  ;;
esac
runtime_platform
case $command in
register) cmd_register "$@" ;;
unregister) cmd_unregister "$@" ;;
verify) cmd_verify "$@" ;;
list) cmd_list "$@" ;;
run) cmd_run "$@" ;;
install | uninstall | start | stop | restart | status) cmd_service "$command" "$@" ;;
*) fatal "Command $command not found." ;;
esac
"""


@contextmanager
def serve_file(content: bytes, path: str = "/gitlab-runner-linux") -> Iterator[str]:
    """Serve `content` at http://127.0.0.1:PORT`path` (a thread); yields the URL.
    Lab hosts are chroots on loopback, so they reach it too. Other paths are 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != path:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
