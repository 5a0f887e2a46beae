"""gitlab-runner on a host: install the binary, register/unregister, config.toml mode.

Pure script builders first (no I/O: `--dry-run` can show them, tests can run them locally),
then small helpers that run them over SSH with `run_script`. Every inventory-derived value
reaches the shell through `shlex.quote`, so a hostile host name or URL is one argument, never
code. The runner token travels on STDIN (read into `CI_SERVER_TOKEN`, which gitlab-runner
reads for `--token`): it is never in a command line, so neither other users' `ps` nor our
logs and exceptions can show it.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from typing import Any

from ..inventory import GitLabSettings
from .connect import CommandResult, run_script

RUNNER_BINARY = "/usr/local/bin/gitlab-runner"
CONFIG_FILE = "/etc/gitlab-runner/config.toml"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TAIL = 400


class RunnerHostError(RuntimeError):
    """A gitlab-runner step failed on a host; names the host, the step and what it said."""


def _q(value: str) -> str:
    return shlex.quote(value)


# --- pure script builders --------------------------------------------------------------------


# GitLab's binary names per OCI architecture (docs/install/linux-manually.md): one `arm` build
# serves arm/v6 and arm/v7.
RUNNER_BINARY_ARCH = {
    "amd64": "amd64",
    "386": "386",
    "arm64": "arm64",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loong64": "loong64",
}
RUNNER_USER = "gitlab-runner"
RUNNER_HOME = "/home/gitlab-runner"


def runner_binary_name(architecture: str) -> str:
    """`gitlab-runner-linux-<arch>` for an OCI architecture (`arm` for arm/v6 and arm/v7)."""
    try:
        return f"gitlab-runner-linux-{RUNNER_BINARY_ARCH[architecture]}"
    except KeyError:
        raise ValueError(
            f"GitLab ships no gitlab-runner binary for architecture {architecture!r} "
            f"(expected one of {', '.join(sorted(RUNNER_BINARY_ARCH))})"
        ) from None


def install_runner_script(
    url: str,
    *,
    binary: str,
    sha256: str = "",
    checksums_url: str = "",
    dest: str = RUNNER_BINARY,
) -> str:
    """Download `url` (https only, redirects too) to a temp file beside `dest`, check its
    sha256 — `sha256` when given, else the line for `binary` in GitLab's published
    `release.sha256` list at `checksums_url` — make it executable and move it into place
    atomically: a failed, refused or unverifiable download leaves nothing.

    Downloader: curl (`--proto =https --proto-redir =https`), else GNU wget (`--https-only`);
    busybox's wget checks no certificate and is not used."""
    for what, value in (("download URL", url), ("checksums URL", checksums_url)):
        if value and not value.startswith("https://"):
            raise ValueError(f"gitlab-runner {what} must be https://…; got {value!r}")
    if not sha256 and not checksums_url:
        raise ValueError("gitlab-runner download needs a sha256 or a checksums URL")
    if sha256 and not _SHA256.match(sha256):
        raise ValueError(f"runner sha256 must be 64 lowercase hex digits; got {sha256!r}")
    return f"""set -eu
url={_q(url)}
sums_url={_q(checksums_url)}
binary={_q(binary)}
want={_q(sha256)}
dest={_q(dest)}
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp "$dest.XXXXXX")
sums=$(mktemp "$dest.sums.XXXXXX")
trap 'rm -f "$tmp" "$sums"' EXIT
if command -v curl >/dev/null 2>&1; then
  fetch() {{ curl -fsSL --proto =https --proto-redir =https --retry 3 -o "$2" "$1"; }}
elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then
  fetch() {{ wget -q --https-only -O "$2" "$1"; }}
else
  echo "cannot download gitlab-runner over https: install curl or GNU wget" >&2
  exit 3
fi
if ! command -v sha256sum >/dev/null 2>&1; then
  echo "cannot verify gitlab-runner: sha256sum is not installed" >&2
  exit 3
fi
if [ -z "$want" ]; then
  if ! fetch "$sums_url" "$sums"; then
    echo "download of gitlab-runner's checksums from $sums_url failed" >&2
    exit 4
  fi
  # sha256sum lines: "<hex>  binaries/<binary>" (maybe "./" or "*" before the path).
  want=$(awk -v name="$binary" '{{ path = $2; sub(/^[*]/, "", path); sub(/^[.][/]/, "", path) }}
    path == name || path == "binaries/" name {{ print $1 }}' "$sums")
  case $want in
  *[!0-9a-f]* | "") echo "no sha256 for $binary in $sums_url; not installed" >&2; exit 5 ;;
  esac
  [ "${{#want}}" -eq 64 ] || {{ echo "no single sha256 for $binary in $sums_url" >&2; exit 5; }}
fi
if ! fetch "$url" "$tmp"; then
  echo "download of gitlab-runner from $url failed" >&2
  exit 4
fi
got=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$got" != "$want" ]; then
  echo "gitlab-runner from $url has sha256 $got, expected $want; not installed" >&2
  exit 5
fi
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
"""


def install_service_script(*, config: str = CONFIG_FILE) -> str:
    """`gitlab-runner install` (commands/service.go): the service definition for the host's
    init system (kardianos/service: a systemd unit, or a System V init script where there is
    no systemd), running `gitlab-runner run` as root with jobs as the gitlab-runner user; it
    also saves an empty config.toml if there is none."""
    return f"""set -eu
export PATH="$PATH:/usr/local/bin"
config={_q(config)}
umask 077
mkdir -p "$(dirname "$config")"
gitlab-runner install --user {_q(RUNNER_USER)} --working-directory {_q(RUNNER_HOME)} \
  --config "$config" </dev/null
[ ! -f "$config" ] || chmod 600 "$config"
"""


# Is the gitlab-runner service running? `gitlab-runner status` answers for systemd, but on a
# Debian System V host (no systemd: kardianos/service writes helpers/service/scripts.go's
# sysvDebianScript) it misreads its own init script — `status_of_proc` prints "... is
# running" and kardianos' sysv Status only takes output starting with "Running" — so a running
# service reads as not installed. There, the pid file start-stop-daemon made decides.
# Where there is no systemd and a System V script, that pid file is asked first —
# also the cheap answer: no process is started for it on every facts run.
RUNNER_RUNNING_FUNCTION = r"""runner_running() {
  if [ -f /etc/init.d/gitlab-runner ] && [ ! -d /run/systemd/system ]; then
    pid=$(cat /var/run/gitlab-runner.pid 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null
    return
  fi
  gitlab-runner status >/dev/null 2>&1
}
"""


def service_script(action: str) -> str:
    """`gitlab-runner start|restart`, then `gitlab-runner status`: exit 0 only when running."""
    if action not in ("start", "restart"):
        raise ValueError(f"unknown service action {action!r}")
    return f"""set -eu
export PATH="$PATH:/usr/local/bin"
{RUNNER_RUNNING_FUNCTION}
gitlab-runner {action} </dev/null
tries=0
until runner_running; do
  tries=$((tries + 1))
  if [ "$tries" -ge 20 ]; then
    gitlab-runner status >&2 || true
    echo "gitlab-runner {action}: the service is not running" >&2
    exit 6
  fi
  sleep 0.5
done
"""


def set_concurrent_script(concurrent: int, *, config: str = CONFIG_FILE) -> str:
    """`concurrent = N` at the top of config.toml (before any table), in place: the file keeps
    its mode and owner, and the running service reloads it (commands/multi.go watches it)."""
    if isinstance(concurrent, bool) or not isinstance(concurrent, int) or concurrent < 1:
        raise ValueError(f"concurrent must be an integer >= 1; got {concurrent!r}")
    return f"""set -eu
config={_q(config)}
tmp=$(mktemp "$config.XXXXXX")
trap 'rm -f "$tmp"' EXIT
awk -v n={concurrent} '
  !done && /^[ \t]*concurrent[ \t]*=/ {{ print "concurrent = " n; done = 1; next }}
  !done && /^[ \t]*[[]/ {{ print "concurrent = " n; done = 1 }}
  {{ print }}
  END {{ if (!done) print "concurrent = " n }}' "$config" >"$tmp"
cat "$tmp" >"$config"
"""


def verify_delete_script(name: str, *, config: str = CONFIG_FILE) -> str:
    """`gitlab-runner verify --delete --name NAME` (commands/verify.go): drops the host's entry
    for a runner GitLab no longer knows (it answers 403 to /runners/verify). An entry GitLab
    still accepts stays; then it is not this scope's runner, and that is an error to settle
    by hand — registering beside it would leave two entries of one name."""
    line = f"name = {json.dumps(name, ensure_ascii=False)}"
    return f"""set -eu
export PATH="$PATH:/usr/local/bin"
name={_q(name)}
config={_q(config)}
gitlab-runner verify --delete --config "$config" --name "$name" </dev/null
if RUNNER_LINE={_q(line)} awk '
    {{ sub(/^[ \t]+/, ""); sub(/[ \t]+$/, ""); if ($0 == ENVIRON["RUNNER_LINE"]) found = 1 }}
    END {{ exit !found }}' "$config"; then
  echo "runner $name in $config is still valid on GitLab, but it is not the runner GitLab lists \
for this host; unregister it by hand (gitlab-runner unregister --name $name)" >&2
  exit 7
fi
"""


def register_argv(
    host_name: str, settings: GitLabSettings, *, config: str = CONFIG_FILE
) -> list[str]:
    """The `gitlab-runner register` command meant for this host. No token (stdin/env) and no
    --tag-list/--run-untagged/--locked: with a glrt- token GitLab set those at creation and
    `register` rejects them."""
    argv = [
        "gitlab-runner",
        "register",
        "--non-interactive",
        "--config",
        config,
        "--url",
        settings.url,
        "--executor",
        settings.executor,
        "--description",
        host_name,
    ]
    if settings.executor == "docker":
        argv += ["--docker-image", settings.docker_image]
        if settings.docker_privileged:
            argv.append("--docker-privileged")
    return argv


def register_script(host_name: str, settings: GitLabSettings, *, config: str = CONFIG_FILE) -> str:
    """Reads the runner token from the first line of stdin; config dir 0700, config.toml 0600."""
    command = " ".join(_q(a) for a in register_argv(host_name, settings, config=config))
    return f"""set -eu
export PATH="$PATH:/usr/local/bin"
CI_SERVER_TOKEN=
IFS= read -r CI_SERVER_TOKEN || true
if [ -z "$CI_SERVER_TOKEN" ]; then
  echo "no runner token on stdin" >&2
  exit 2
fi
export CI_SERVER_TOKEN
config={_q(config)}
umask 077
mkdir -p "$(dirname "$config")"
chmod 700 "$(dirname "$config")"
{command} </dev/null
chmod 600 "$config"
"""


def unregister_script(name: str, *, config: str = CONFIG_FILE) -> str:
    """Unregister the runner called `name`; nothing to do (exit 0) when it is not in config.toml,
    so a re-run converges (`gitlab-runner unregister` fails on an unknown name)."""
    # config.toml holds the name as a TOML basic string; JSON's escaping is the same here.
    line = f"name = {json.dumps(name, ensure_ascii=False)}"
    return f"""set -eu
export PATH="$PATH:/usr/local/bin"
name={_q(name)}
config={_q(config)}
if [ -f "$config" ] && RUNNER_LINE={_q(line)} awk '
    {{ sub(/^[ \\t]+/, ""); sub(/[ \\t]+$/, ""); if ($0 == ENVIRON["RUNNER_LINE"]) found = 1 }}
    END {{ exit !found }}' "$config"; then
  gitlab-runner unregister --config "$config" --name "$name" </dev/null
else
  echo "runner $name is not registered; nothing to unregister"
fi
"""


def fix_config_mode_script(*, config: str = CONFIG_FILE) -> str:
    return f"""set -eu
config={_q(config)}
chmod 700 "$(dirname "$config")"
chmod 600 "$config"
"""


# --- running them on a host ------------------------------------------------------------------


class _WithStdin:
    """A connection whose `run` feeds `data` to the remote command's stdin, so `run_script`
    (quoting, error mapping) serves commands that take a secret on stdin too."""

    def __init__(self, connection: Any, data: str) -> None:
        self._connection = connection
        self._data = data
        # run_script reads these off the connection: sudo, and the login for its errors.
        self.become = getattr(connection, "become", None)
        self.login_user = getattr(connection, "login_user", "")

    def run(self, command: str, **kwargs: Any) -> Any:
        return self._connection.run(
            command, in_stream=io.StringIO(self._data), echo_stdin=False, **kwargs
        )


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[hidden]")
    return text


def _check(
    result: CommandResult, *, host: str, what: str, secrets: tuple[str, ...] = ()
) -> CommandResult:
    if not result.ok:
        said = (result.stderr.strip() or result.stdout.strip())[-_TAIL:]
        raise RunnerHostError(
            _redact(f"{host}: {what} failed (exit {result.exit_code}): {said}", secrets)
        )
    return result


def install_runner(
    connection: Any,
    host_name: str,
    url: str,
    *,
    binary: str,
    sha256: str = "",
    checksums_url: str = "",
    timeout: float = 300,
) -> CommandResult:
    script = install_runner_script(url, binary=binary, sha256=sha256, checksums_url=checksums_url)
    result = run_script(connection, script, timeout=timeout, host=host_name)
    return _check(result, host=host_name, what=f"installing gitlab-runner from {url}")


def register_runner(
    connection: Any,
    host_name: str,
    settings: GitLabSettings,
    token: str,
    *,
    timeout: float = 120,
) -> CommandResult:
    """`gitlab-runner register` on the host, the token on stdin; config.toml ends up 0600.
    Output is returned (and errors raised) with the token replaced by [hidden]."""
    if not token or any(c in token for c in "\r\n\0"):
        raise ValueError(f"{host_name}: runner token is empty or spans lines; not registering")
    script = register_script(host_name, settings)
    result = run_script(
        _WithStdin(connection, token + "\n"), script, timeout=timeout, host=host_name
    )
    secrets = (token,)
    clean = CommandResult(
        result.exit_code, _redact(result.stdout, secrets), _redact(result.stderr, secrets)
    )
    return _check(clean, host=host_name, what="gitlab-runner register", secrets=secrets)


def unregister_runner(
    connection: Any, host_name: str, name: str, *, timeout: float = 120
) -> CommandResult:
    result = run_script(connection, unregister_script(name), timeout=timeout, host=host_name)
    return _check(result, host=host_name, what=f"gitlab-runner unregister --name {name}")


def fix_config_mode(connection: Any, host_name: str, *, timeout: float = 60) -> CommandResult:
    result = run_script(connection, fix_config_mode_script(), timeout=timeout, host=host_name)
    return _check(result, host=host_name, what=f"chmod 600 {CONFIG_FILE}")
