set +x  # Jenkins runs a script without a shebang as `sh -xe`: no trace.
# archfleet multiArchBuild, images: 'discover': `archfleet discover-images --json` in the
# checkout, with the step's discover: options (vars/multiArchBuild.groovy discoverImages).
# Inputs, from the environment only (src/archfleet/Config.groovy discoverEnv): the values never
# stand in this script's text, and each becomes ONE argument in the `--flag=VALUE` form (a
# value starting with '-' stays a value):
#   AF_DISCOVER_ROOT (--root)   AF_DISCOVER_PATTERNS, AF_DISCOVER_EXCLUDES (one glob a line:
#   --pattern, --exclude)   AF_DISCOVER_DEFAULT_EXCLUDES 1|0 (0: --no-default-excludes)
#   AF_DISCOVER_ROOT_NAME (--root-name, when set)   AF_ARCHFLEET / ARCHFLEET (the command)
# Output: $AF_OUT/images.json (stdout carries nothing else; messages go to stderr).
set -eu

set -- discover-images --json "--root=${AF_DISCOVER_ROOT:-.}"
if [ "${AF_DISCOVER_DEFAULT_EXCLUDES:-1}" != 1 ]; then
    set -- "$@" --no-default-excludes
fi
if [ -n "${AF_DISCOVER_ROOT_NAME:-}" ]; then
    set -- "$@" "--root-name=$AF_DISCOVER_ROOT_NAME"
fi
while IFS= read -r glob; do
    if [ -n "$glob" ]; then
        set -- "$@" "--pattern=$glob"
    fi
done <<AF_EOF
${AF_DISCOVER_PATTERNS:-}
AF_EOF
while IFS= read -r glob; do
    if [ -n "$glob" ]; then
        set -- "$@" "--exclude=$glob"
    fi
done <<AF_EOF
${AF_DISCOVER_EXCLUDES:-}
AF_EOF
# The command may carry arguments of its own (archfleet: '/opt/x/python -m toolkit'): split.
# shellcheck disable=SC2086
${AF_ARCHFLEET:-${ARCHFLEET:-archfleet}} "$@" > "$AF_OUT/images.json"
