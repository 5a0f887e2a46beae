"""apt-get in the host scripts: each failure told by its real cause, a held lock waited for.

apt's own messages (apt 2.6, Debian 12; apt-pkg/contrib/fileutl.cc `GetLock`, apt-pkg/deb/
debsystem.cc, apt-pkg/update.cc in Debian/apt), checked with the real apt-get here:
- not root: `GetLock` cannot even open the lock file — "E: Could not open lock file
  /var/lib/apt/lists/lock - open (13: Permission denied)", then "E: Unable to lock directory
  /var/lib/apt/lists/", or for dpkg's frontend lock "..., are you root?". Nothing to wait
  for: it fails at once, and so does our step (the old pattern took it for a held lock and
  waited 5 minutes);
- the lock held by another process (unattended-upgrades after boot): the file opens but
  fcntl(F_SETLK) fails — "E: Could not get lock /var/lib/apt/lists/lock. It is held by process
  4242 (unattended-upgr)" (older apt: "... - open (11: Resource temporarily unavailable)"),
  "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another
  process using it?". `-o DPkg::Lock::Timeout` waits for the dpkg lock only, so `apt_get`
  retries every few seconds, up to LOCK_WAIT_SECONDS;
- a package no source has: "E: Unable to locate package umoci", "E: Package 'x' has no
  installation candidate";
- a mirror that cannot be reached: `apt-get update` only WARNS ("W: Failed to fetch
  http://…/InRelease  Could not connect to …", "W: Some index files failed to download") and
  exits 0 (update.cc: a transient network failure is a warning), so the install that follows
  finds no package, or cannot download it ("E: Failed to fetch …", "E: Unable to fetch some
  archives"). `apt_get` remembers the update's warning to name the mirror, not the package.

On any failure `apt_get` prints apt's output, then ONE line `archfleet: apt-get …; fix: …`
(the line the caller reports, see FAILURE_MARKER), and EXITS the script: `set -e` does not
stop a script at a failure inside an `a && b` list or an `if`, which is how the builder
script once went on to `buildah: not found`. Pure: constants of POSIX sh, no inventory string.
"""

from __future__ import annotations

# How long to wait for the locks in all, per apt-get call; unattended-upgrades can take minutes.
LOCK_WAIT_SECONDS = 300
_RETRY_SECONDS = 5

# A host script's one-line account of why it failed starts with this; run_script's callers
# report that line instead of the tail of stderr (toolkit.fleet.provision).
FAILURE_MARKER = "archfleet: "

# Define once at the top of a script, then call `apt_get update -qq`, `apt_get install ...`.
# LC_ALL=C: apt's messages in English, the ones matched here.
APT_GET_FUNCTION = rf"""
apt_fetch_warning=
# The first line of apt's output holding any of the strings given after it (plain sh: a
# host may lack grep or head, and a missing one must not fail a step that succeeded).
apt_first() {{
  text=$1; shift
  printf '%s\n' "$text" | while IFS= read -r line; do
    for pattern do
      case $line in *"$pattern"*) printf '%s\n' "$line"; return 0 ;; esac
    done
  done
}}
apt_last_error() {{
  last=
  while IFS= read -r line; do
    case $line in "E: "*) last=$line ;; esac
  done <<APT_OUT
$1
APT_OUT
  printf '%s\n' "${{last:-${{1##*
}}}}"
}}
apt_fail() {{
  printf '%s\n' "$apt_out" >&2
  printf '{FAILURE_MARKER}%s\n' "$2" >&2
  exit "$1"
}}
apt_get() {{
  waited=0
  while :; do
    apt_out=$(DEBIAN_FRONTEND=noninteractive LC_ALL=C \
      apt-get -o DPkg::Lock::Timeout=60 "$@" 2>&1) && {{
      [ -z "$apt_out" ] || printf '%s\n' "$apt_out"
      # update exits 0 when a mirror cannot be reached: keep the warning for what follows.
      warning=$(apt_first "$apt_out" 'Failed to fetch')
      [ -z "$warning" ] || apt_fetch_warning=$warning
      return 0
    }}
    status=$?
    case $apt_out in
      *"(13: Permission denied)"*|*"are you root?"*)
        apt_fail "$status" "apt-get $1: permission denied, $(id -un) is not root \
($(apt_first "$apt_out" 'Permission denied' 'are you root')); fix: log in as root, or set \
ssh.become: sudo (passwordless sudo for $(id -un))" ;;
      *"Could not get lock"*|*"is another process using it?"*)
        if [ "$waited" -ge {LOCK_WAIT_SECONDS} ]; then
          apt_fail "$status" "apt-get $1: apt is locked by another process, still after \
${{waited}}s ($(apt_first "$apt_out" 'Could not get lock' 'another process')); fix: let it \
finish (unattended-upgrades runs after boot), then run again"
        fi
        sleep {_RETRY_SECONDS}
        waited=$((waited + {_RETRY_SECONDS}))
        continue ;;
      *"Unable to locate package"*|*"has no installation candidate"*|*"Couldn't find any package"*)
        missing=$(apt_first "$apt_out" 'Unable to locate' 'no installation candidate' 'find any')
        if [ -n "$apt_fetch_warning" ]; then
          apt_fail "$status" "apt-get $1: package mirror unreachable, so no package list \
($missing; apt-get update: $apt_fetch_warning); fix: check the host's network or proxy and \
its apt sources (/etc/apt/sources.list*)"
        fi
        apt_fail "$status" "apt-get $1: package not found ($missing); fix: enable the apt \
source that has it on this host (its OS release may not package it), or choose another \
builder.tool" ;;
      *"Failed to fetch"*|*"Unable to fetch"*|*"Could not resolve"*|*"Could not connect"*)
        apt_fail "$status" "apt-get $1: package mirror unreachable \
($(apt_first "$apt_out" 'Failed to fetch' 'Could not resolve' 'Could not connect')); fix: check \
the host's network or proxy and its apt sources (/etc/apt/sources.list*)" ;;
      *)
        apt_fail "$status" "apt-get $1 failed (exit $status): $(apt_last_error "$apt_out")" ;;
    esac
  done
}}
"""  # noqa: S608 - POSIX sh, not SQL (it says "update" and "from")


def failure_line(stderr: str) -> str | None:
    """The script's own one-line account of its failure (the last FAILURE_MARKER line), or
    None when it printed none."""
    lines = [line for line in stderr.splitlines() if line.startswith(FAILURE_MARKER)]
    return lines[-1].removeprefix(FAILURE_MARKER).strip() if lines else None
