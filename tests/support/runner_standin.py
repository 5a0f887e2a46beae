"""A STAND-IN for the gitlab-runner binary, and a loopback HTTP server to download it from.

The real gitlab-runner cannot be downloaded on these machines, so the host-side tests install
this small POSIX sh script instead, through the same install script, from a URL on 127.0.0.1.
It behaves like the documented commands the toolkit relies on:

- `--version` prints `Version:      17.5.0` and friends, as the real one does;
- `register --non-interactive --url U --executor E --description N [--config C]
  [--docker-image I --docker-privileged]` takes the token from `--token` or `$CI_SERVER_TOKEN`
  and appends a `[[runners]]` table (name, url, id, token, executor) to config.toml; like the
  real one it refuses --tag-list/--run-untagged/--locked/… with a `glrt-` token. It cannot ask
  GitLab for the runner id (`/runners/verify`), so the id is a checksum of the token;
- `unregister --name N [--config C]` removes that table (fails on an unknown name, like the real
  one; the real one also tells GitLab, the stand-in cannot);
- `list` prints the configured runners on stderr — as the real one, WITH their tokens.

Every call appends its argv, and its parent's command line from /proc, to
/var/log/gitlab-runner-standin.log, so a test can prove no token ever was an argument.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["STANDIN_LOG", "STANDIN_SCRIPT", "STANDIN_VERSION", "serve_file"]

STANDIN_VERSION = "17.5.0"
STANDIN_LOG = "/var/log/gitlab-runner-standin.log"

STANDIN_SCRIPT = r"""#!/bin/sh
# STAND-IN for gitlab-runner (archfleet tests): the real binary cannot be downloaded here.
set -eu
log=/var/log/gitlab-runner-standin.log
{
  printf 'argv:'
  for a in "$@"; do printf ' [%s]' "$a"; done
  printf '\n'
  if [ -r "/proc/$PPID/cmdline" ]; then
    printf 'parent: '
    tr '\0' ' ' <"/proc/$PPID/cmdline"
    printf '\n'
  fi
} >>"$log" 2>/dev/null || true

config=/etc/gitlab-runner/config.toml
toml() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'; }

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
--version | -v | version)
  printf 'Version:      17.5.0\nGit revision: 5a0d4b0c\nGit branch:   17-5-stable\n'
  printf 'GO version:   go1.22.7\nBuilt:        2024-10-17T15:33:36+0000\n'
  case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  printf 'OS/Arch:      linux/%s\n' "$arch"
  ;;
register)
  url='' executor='' name='' image='' privileged=false interactive=true reserved=''
  token=${CI_SERVER_TOKEN:-}
  while [ $# -gt 0 ]; do
    case $1 in
    --non-interactive) interactive=false ;;
    --url | -u) url=$2; shift ;;
    --executor) executor=$2; shift ;;
    --description | --name) name=$2; shift ;;
    --config | -c) config=$2; shift ;;
    --token | -t) token=$2; shift ;;
    --docker-image) image=$2; shift ;;
    --docker-privileged) privileged=true ;;
    --tag-list | --access-level | --maximum-timeout | --maintenance-note) reserved=$1; shift ;;
    --run-untagged* | --locked* | --paused* | --tag-list=*) reserved=$1 ;;
    *) echo "FATAL: unknown register option $1" >&2; exit 1 ;;
    esac
    shift
  done
  if $interactive; then echo "FATAL: stand-in cannot prompt; use --non-interactive" >&2; exit 1; fi
  if [ -z "$url" ] || [ -z "$executor" ] || [ -z "$token" ]; then
    echo "FATAL: register needs --url, --executor and a token" >&2; exit 1
  fi
  case $token in glrt-*)
    if [ -n "$reserved" ]; then
      {
        printf 'FATAL: Runner configuration other than name and executor configuration is '
        printf 'reserved (specifically --locked, --access-level, --run-untagged, '
        printf -- '--maximum-timeout, --paused, --tag-list, and --maintenance-note) and cannot '
        printf 'be specified when registering with a runner authentication token. This '
        printf 'configuration is specified on the GitLab server. Please try again without '
        printf 'specifying any of those arguments.\n'
      } >&2
      exit 1
    fi ;;
  esac
  case $executor in
  shell) ;;
  docker) [ -n "$image" ] || { echo "FATAL: docker executor needs --docker-image" >&2; exit 1; } ;;
  *) echo "FATAL: executor $executor is not supported by the stand-in" >&2; exit 1 ;;
  esac
  echo "Runtime platform  arch=$(uname -m) os=linux revision=5a0d4b0c version=17.5.0" >&2
  mkdir -p "$(dirname "$config")"
  if [ ! -f "$config" ]; then
    printf 'concurrent = 1\ncheck_interval = 0\nshutdown_timeout = 0\n\n' >"$config"
    printf '[session_server]\n  session_timeout = 1800\n' >>"$config"
  fi
  id=$(printf '%s' "$token" | cksum | cut -d' ' -f1)
  {
    printf '\n[[runners]]\n'
    printf '  name = "%s"\n' "$(toml "$name")"
    printf '  url = "%s"\n' "$(toml "$url")"
    printf '  id = %s\n' "$id"
    printf '  token = "%s"\n' "$(toml "$token")"
    printf '  token_obtained_at = %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf '  token_expires_at = 0001-01-01T00:00:00Z\n'
    printf '  executor = "%s"\n' "$executor"
    printf '  [runners.cache]\n    MaxUploadedArchiveSize = 0\n'
    if [ "$executor" = docker ]; then
      printf '  [runners.docker]\n    image = "%s"\n' "$(toml "$image")"
      printf '    privileged = %s\n' "$privileged"
    fi
  } >>"$config"
  printf '%s%s\n' "Runner registered successfully. Feel free to start it, but if it's " \
    "running already the config should be automatically reloaded!" >&2
  echo "Configuration (with the authentication token) was saved in \"$config\"" >&2
  ;;
unregister)
  name=''
  while [ $# -gt 0 ]; do
    case $1 in
    --name | -n) name=$2; shift ;;
    --config | -c) config=$2; shift ;;
    *) echo "FATAL: unknown unregister option $1" >&2; exit 1 ;;
    esac
    shift
  done
  [ -f "$config" ] || { echo "FATAL: $config does not exist" >&2; exit 1; }
  tmp="$config.standin"
  RUNNER_NAME=$name awk '
    function flush() { if (block != "" && !drop) printf "%s", block; block = ""; drop = 0 }
    /^\[\[runners\]\]/ { flush(); inblock = 1 }
    /^\[[^[]/ { flush(); inblock = 0 }
    {
      if (inblock) {
        block = block $0 "\n"; line = $0; sub(/^[ \t]+/, "", line)
        if (line == "name = \"" ENVIRON["RUNNER_NAME"] "\"") { drop = 1; found = 1 }
      } else print
    }
    END { flush(); exit (found ? 0 : 3) }' "$config" >"$tmp" || {
    rm -f "$tmp"
    echo "FATAL: could not find a runner with the name '$name'" >&2
    exit 1
  }
  cat "$tmp" >"$config"
  rm -f "$tmp"
  echo "Unregistering runner from GitLab succeeded (stand-in: not contacted)  runner=$name" >&2
  ;;
list)
  while [ $# -gt 0 ]; do
    case $1 in
    --config | -c) config=$2; shift ;;
    *) echo "FATAL: unknown list option $1" >&2; exit 1 ;;
    esac
    shift
  done
  echo "Listing configured runners                          ConfigFile=$config" >&2
  [ -f "$config" ] || exit 0
  awk '
    function show() { if (n != "") printf "%-51s Executor=%s Token=%s URL=%s\n", n, e, t, u }
    /^\[\[runners\]\]/ { show(); n = ""; e = ""; t = ""; u = "" }
    /^[ \t]*name = /     { n = $0; sub(/^[^"]*"/, "", n); sub(/"$/, "", n) }
    /^[ \t]*executor = / { e = $0; sub(/^[^"]*"/, "", e); sub(/"$/, "", e) }
    /^[ \t]*token = /    { t = $0; sub(/^[^"]*"/, "", t); sub(/"$/, "", t) }
    /^[ \t]*url = /      { u = $0; sub(/^[^"]*"/, "", u); sub(/"$/, "", u) }
    END { show() }' "$config" >&2
  ;;
*)
  echo "FATAL: stand-in gitlab-runner: unknown command '$command'" >&2
  exit 1
  ;;
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
