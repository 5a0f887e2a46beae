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


def install_runner_script(url: str, sha256: str = "", *, dest: str = RUNNER_BINARY) -> str:
    """Download `url` to a temp file beside `dest`, check its sha256 (when given), make it
    executable and move it into place atomically: a failed or refused download leaves nothing.

    Downloader: curl, else wget, else busybox's wget (minimal hosts); none is a clear error."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"runner download URL must be http(s)://…; got {url!r}")
    if sha256 and not _SHA256.match(sha256):
        raise ValueError(f"runner sha256 must be 64 lowercase hex digits; got {sha256!r}")
    return f"""set -eu
url={_q(url)}
want={_q(sha256)}
dest={_q(dest)}
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp "$dest.XXXXXX")
trap 'rm -f "$tmp"' EXIT
if command -v curl >/dev/null 2>&1; then
  fetch() {{ curl -fsSL --retry 3 -o "$tmp" "$url"; }}
elif command -v wget >/dev/null 2>&1; then
  fetch() {{ wget -q -O "$tmp" "$url"; }}
elif command -v busybox >/dev/null 2>&1 && busybox wget --help >/dev/null 2>&1; then
  fetch() {{ busybox wget -q -O "$tmp" "$url"; }}
else
  echo "cannot download gitlab-runner: neither curl nor wget is installed" >&2
  exit 3
fi
if ! fetch; then
  echo "download of gitlab-runner from $url failed" >&2
  exit 4
fi
if [ -n "$want" ]; then
  if ! command -v sha256sum >/dev/null 2>&1; then
    echo "cannot verify gitlab-runner: sha256sum is not installed" >&2
    exit 3
  fi
  got=$(sha256sum "$tmp" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "gitlab-runner from $url has sha256 $got, expected $want; not installed" >&2
    exit 5
  fi
fi
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
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
    connection: Any, host_name: str, url: str, sha256: str = "", *, timeout: float = 300
) -> CommandResult:
    script = install_runner_script(url, sha256)
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
