"""apt-get on a fresh host: wait, bounded, while another process holds apt's or dpkg's lock.

A host that just booted often runs unattended-upgrades, which holds /var/lib/apt/lists/lock
and /var/lib/dpkg/lock-frontend for minutes. `-o DPkg::Lock::Timeout` waits for the dpkg lock
only; `apt-get update` (the lists lock) fails at once with "Could not get lock". So the
scripts define `apt_get`, which retries a lock failure every few seconds up to a limit and
passes any other failure straight through. Pure: constants of POSIX sh, no inventory string.
"""

from __future__ import annotations

# How long to wait for the locks in all, per apt-get call; unattended-upgrades can take minutes.
LOCK_WAIT_SECONDS = 300
_RETRY_SECONDS = 5

# Define once at the top of a script, then call `apt_get update -qq`, `apt_get install ...`.
APT_GET_FUNCTION = rf"""
apt_get() {{
  waited=0
  while :; do
    out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=60 "$@" 2>&1) && {{
      [ -z "$out" ] || printf '%s\n' "$out"
      return 0
    }}
    status=$?
    case $out in
      *"Could not get lock"*|*"Unable to lock"*|*"Unable to acquire the dpkg frontend lock"*) ;;
      *) printf '%s\n' "$out" >&2; return $status ;;
    esac
    if [ "$waited" -ge {LOCK_WAIT_SECONDS} ]; then
      printf 'apt is still locked by another process after %ss (unattended-upgrades?): %s\n' \
        "$waited" "$(printf '%s\n' "$out" | grep -m1 'lock')" >&2
      return $status
    fi
    sleep {_RETRY_SECONDS}
    waited=$((waited + {_RETRY_SECONDS}))
  done
}}
"""
