"""The users CI jobs run as on a build host — gitlab-runner's shell executor user and the
Jenkins agent's user: created if missing, put in the groups the builder needs, and given
subordinate uid/gid ranges for rootless buildah. Pure: POSIX sh out, names checked, every
value through shlex.quote. One implementation for both sides, so they cannot drift.

Why the JOB user and not the SSH login: the docker group is root-equivalent, and it is the
job's user that runs `docker build` — granting it to the provisioning login would both miss
the jobs and widen the login's rights.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

# What useradd and the shadow tools accept as a portable user or group name
# (shadow's `is_valid_user_name`, without the trailing `$` of machine accounts).
_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# useradd's defaults for subordinate ids (login.defs SUB_UID_MIN, SUB_UID_COUNT).
SUBID_MIN = 100000
SUBID_COUNT = 65536

# Append a free range of SUBID_COUNT ids for $user to a subid file, like useradd does for a
# new regular user: after the highest range in use, and not below SUBID_MIN.
_SUBID_FUNCTION = rf"""
add_subids() {{
  file=$1
  [ -e "$file" ] || {{ : > "$file"; chmod 0644 "$file"; }}
  if grep -q "^$user:" "$file" || grep -q "^$uid:" "$file"; then
    echo "$file: $user already has a range"
    return 0
  fi
  start=$(awk -F: -v min={SUBID_MIN} \
    'BEGIN {{ n = min }} NF >= 3 && $2 + $3 > n {{ n = $2 + $3 }} END {{ printf "%d", n }}' "$file")
  printf '%s:%s:%s\n' "$user" "$start" {SUBID_COUNT} >> "$file"
  echo "$file: gave $user ids $start-$((start + {SUBID_COUNT} - 1))"
}}
"""


def check_name(what: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} {name!r}: expected a user/group name (lower-case letters, digits, _ and -, "
            "starting with a letter or _, at most 32 characters)"
        )
    return name


def ensure_job_user_script(
    user: str,
    *,
    comment: str = "",
    home: str | None = None,
    groups: Sequence[str] = (),
    subids: bool = False,
    ssh_login: bool = False,
) -> str:
    """Create `user` if missing (useradd, or busybox adduser on Alpine) with a home (`home`,
    else the system's default); with `ssh_login`, password "*" — no password login, yet not
    locked ("!"), which sshd without PAM refuses even for key logins (openssh auth.c
    allowed_user). Add it to each of `groups` (created if missing). With `subids`, give it a
    free /etc/subuid and /etc/subgid range unless it has one. Idempotent; sets `$uid` and
    `$group` for what follows."""
    check_name("user", user)
    for group in groups:
        check_name("group", group)
    u = shlex.quote(user)
    options = f" --comment {shlex.quote(comment)}" if comment else ""
    options += f" --home-dir {shlex.quote(home)}" if home else ""
    busybox = f" -g {shlex.quote(comment)}" if comment else ""
    busybox += f" -h {shlex.quote(home)}" if home else ""
    lines = [
        "set -e",
        'export PATH="$PATH:/usr/local/bin:/usr/sbin:/sbin"',
        f"user={u}",
        _SUBID_FUNCTION.strip("\n"),
        "shell=/bin/sh; [ -x /bin/bash ] && shell=/bin/bash",
        f"if ! id {u} >/dev/null 2>&1; then",
        "  if command -v useradd >/dev/null 2>&1; then",
        f'    useradd --create-home --shell "$shell"{options} {u}',
        *([f"    usermod -p '*' {u}"] if ssh_login else []),
        "  else",
        f'    adduser -D -s "$shell"{busybox} {u}',
        *([f"    echo {shlex.quote(user + ':*')} | chpasswd -e"] if ssh_login else []),
        "  fi",
        '  echo "created user $user"',
        "fi",
        f"uid=$(id -u {u})",
        f"group=$(id -gn {u})",
    ]
    for name in groups:
        g = shlex.quote(name)
        lines += [
            f"if ! getent group {g} >/dev/null 2>&1 && ! grep -q '^'{g}: /etc/group; then",
            f"  if command -v groupadd >/dev/null 2>&1; then groupadd --system {g}; "
            f"else addgroup -S {g}; fi",
            "fi",
            f"if ! id -nG {u} | tr ' ' '\\n' | grep -qx {g}; then",
            f"  if command -v usermod >/dev/null 2>&1; then usermod -a -G {g} {u}; "
            f"else addgroup {u} {g}; fi",
            f'  echo "added $user to group "{g}',
            "fi",
        ]
    if subids:
        lines += ["add_subids /etc/subuid", "add_subids /etc/subgid"]
    return "\n".join(lines) + "\n"
