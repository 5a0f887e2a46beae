set +x  # Jenkins runs a script without a shebang as `sh -xe`: no trace.
# archfleet multiArchBuild: merge the per-platform digests into ONE index written under every
# tag (one merge-manifest run, repeated --target), then verify each tag.
#
# Inputs from the environment (withEnv; REGISTRY_USER/REGISTRY_PASSWORD from withCredentials,
# or DOCKER_CONFIG in archfleetImage: read by archfleet itself, never put on a command line):
#   AF_TARGETS "registry/app:1.0 registry/app:latest"
#   AF_SOURCES "linux/amd64=@sha256:... linux/arm64=@sha256:..."   AF_PLATFORMS linux/amd64,...
#   AF_INSECURE AF_CHILD_TAGS AF_VERIFY AF_CHECK_BINARIES 1|0   AF_OUT (work dir)
#   AF_ANNOTATION_SOURCE AF_ANNOTATION_REVISION AF_ANNOTATION_CREATED_MILLIS (each optional):
#     the index's org.opencontainers.image.source/.revision/.created (RFC 3339 UTC from millis)
#   AF_ARCHFLEET, else $ARCHFLEET (e.g. an agent property), else `archfleet` on PATH
# Output: $AF_OUT/index-digest.
set -eu

out="$AF_OUT"
mkdir -p "$out"
rm -f "$out/index-digest"
# A command, possibly with arguments ("python3 -m toolkit"): split on purpose below.
archfleet="${AF_ARCHFLEET:-${ARCHFLEET:-archfleet}}"

set -- merge-manifest
if [ "${AF_INSECURE:-0}" = 1 ]; then
    set -- "$@" --insecure
fi
if [ "${AF_CHILD_TAGS:-1}" != 1 ]; then
    set -- "$@" --no-child-tags
fi
if [ -n "${AF_ANNOTATION_SOURCE:-}" ]; then
    set -- "$@" --annotation "org.opencontainers.image.source=$AF_ANNOTATION_SOURCE"
fi
if [ -n "${AF_ANNOTATION_REVISION:-}" ]; then
    set -- "$@" --annotation "org.opencontainers.image.revision=$AF_ANNOTATION_REVISION"
fi
if [ -n "${AF_ANNOTATION_CREATED_MILLIS:-}" ]; then
    # GNU and busybox date both read -d @SECONDS; a date that cannot leaves the annotation out.
    if created=$(date -u -d "@$((AF_ANNOTATION_CREATED_MILLIS / 1000))" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null); then
        set -- "$@" --annotation "org.opencontainers.image.created=$created"
    else
        echo "archfleet: WARNING: date -u -d @SECONDS failed here: no org.opencontainers.image.created" >&2
    fi
fi
for target in $AF_TARGETS; do
    set -- "$@" --target "$target"
done
for source in $AF_SOURCES; do
    set -- "$@" --source "$source"
done
echo "archfleet: merging $AF_PLATFORMS into $AF_TARGETS"
# stdout is the index digest alone; the table goes to stderr (the build log).
# shellcheck disable=SC2086
digest=$($archfleet "$@")
printf '%s\n' "$digest" > "$out/index-digest"

if [ "${AF_VERIFY:-1}" = 1 ]; then
    for target in $AF_TARGETS; do
        set -- verify-manifest --target "$target" --platforms "$AF_PLATFORMS"
        if [ "${AF_INSECURE:-0}" = 1 ]; then
            set -- "$@" --insecure
        fi
        if [ "${AF_CHECK_BINARIES:-1}" = 1 ]; then
            set -- "$@" --check-binaries
        fi
        # shellcheck disable=SC2086
        $archfleet "$@"
    done
fi
echo "archfleet: index $digest"
