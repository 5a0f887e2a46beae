set +x  # Jenkins runs a script without a shebang as `sh -xe`: no trace.
# archfleet multiArchBuild preflight: does every base image of the Dockerfile offer every target
# platform? Runs on the merge agent (or in archfleetImage there) BEFORE any platform builds, so an
# amd64-only base fails the build in seconds, naming the base, instead of after an arm64 agent
# was taken. `archfleet check-bases` (toolkit/registry/tool_commands.py) reads the FROM lines
# with the build args, asks each base's registry once, and exits 1 naming each missing platform.
#
# Inputs from the environment (withEnv; DOCKER_CONFIG: a private docker config with the image
# registry's login when the build pushes with credentialsId; archfleet reads it itself):
#   AF_PLATFORMS linux/amd64,linux/arm64   AF_DOCKERFILE (workspace-relative)   AF_INSECURE 1|0
#   AF_OUT work dir outside the workspace; $AF_OUT/build-args: one NAME=VALUE per line
#   AF_ARCHFLEET, else $ARCHFLEET, else `archfleet` on PATH (the same lookup as merge.sh)
# Output: the table on stdout; the problems also in $AF_OUT/check-bases.err for the step.
# Exits with archfleet's code.
set -eu

out="$AF_OUT"
archfleet="${AF_ARCHFLEET:-${ARCHFLEET:-archfleet}}"

set -- check-bases --platforms "$AF_PLATFORMS" --build-platform native --file "$AF_DOCKERFILE"
if [ "${AF_INSECURE:-0}" = 1 ]; then
    set -- "$@" --insecure
fi
# Build args as the build gets them (build.sh): the value through the environment, the name
# alone on the command line (`--build-arg NAME` takes $NAME, as docker build does).
if [ -s "$out/build-args" ]; then
    while IFS= read -r build_arg || [ -n "$build_arg" ]; do
        [ -n "$build_arg" ] || continue
        name=${build_arg%%=*}
        case "$name" in
        '' | [0-9]* | *[!A-Za-z0-9_]*)
            echo "archfleet: bad build arg name in $out/build-args: '$name'" >&2
            exit 2
            ;;
        esac
        export "$name=${build_arg#*=}"
        set -- "$@" --build-arg "$name"
    done < "$out/build-args"
fi

echo "archfleet: checking the base images of $AF_DOCKERFILE for $AF_PLATFORMS"
code=0
# shellcheck disable=SC2086
$archfleet "$@" 2> "$out/check-bases.err" || code=$?
cat "$out/check-bases.err" >&2
exit "$code"
