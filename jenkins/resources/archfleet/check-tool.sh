set +xe  # Jenkins runs a script without a shebang as `sh -xe`: no trace, and no -e (exit codes are read).
# archfleet multiArchBuild preflight: is archfleet where the merge will run, and which version?
#
# Runs where merge.sh runs (on the merge agent, or in archfleetImage there) BEFORE any platform
# builds, so a missing or wrong tool fails the build in seconds, not after every push.
# Prints key=value lines for the step to judge (src/archfleet/Tool.groovy): command=, status=
# missing|ok|failed, code=, output= (the first lines of `--version`). Exits 0 unless the shell
# itself fails: the step, not this script, says what is wrong and how to fix it.
#   AF_ARCHFLEET, else $ARCHFLEET, else `archfleet` on PATH (the same lookup as merge.sh)
set -u

archfleet="${AF_ARCHFLEET:-${ARCHFLEET:-archfleet}}"
# A command, possibly with arguments ("python3 -m toolkit"): split on purpose.
# shellcheck disable=SC2086
set -- $archfleet
printf 'command=%s\n' "$1"
if ! command -v "$1" >/dev/null 2>&1; then
    printf 'status=missing\n'
    exit 0
fi
output=$("$@" --version 2>&1)
code=$?
if [ "$code" -eq 0 ]; then
    printf 'status=ok\n'
else
    printf 'status=failed\n'
fi
printf 'code=%s\n' "$code"
printf '%s\n' "$output" | head -n 5 | sed 's/^/output=/'
