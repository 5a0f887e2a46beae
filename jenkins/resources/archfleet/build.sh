set +x  # Jenkins runs a script without a shebang as `sh -xe`: no trace (it would echo secrets).
# archfleet multiArchBuild: build ONE platform on this agent and push it BY DIGEST.
#
# No tag is written here: the image lands in the registry under its digest only, and the merge
# stage writes the tags once every platform has built. Inputs come from the environment (set by
# vars/multiArchBuild.groovy with withEnv; REGISTRY_USER/REGISTRY_PASSWORD by withCredentials):
#   AF_BUILDER buildx|buildah   AF_PLATFORM linux/arm64   AF_IMAGE registry/team/app
#   AF_REGISTRY registry        AF_CONTEXT  AF_DOCKERFILE
#   AF_OUT work dir OUTSIDE the workspace (pwd(tmp: true)/archfleet-<arch>: never in the build
#          context)   AF_LOCAL_REF (buildah: local name)  AF_PUSH 1|0  AF_INSECURE 1|0
#   $AF_OUT/build-args: one NAME=VALUE per line
# Output: $AF_OUT/digest (buildah) or $AF_OUT/metadata.json (buildx).
# No shebang on purpose: durable-task runs a script that has one by exec'ing the file, which
# fails on a noexec workspace; without one it runs `sh -xe script.sh` (hence the `set +x`).
set -eu

out="$AF_OUT"
mkdir -p "$out"
rm -f "$out/digest" "$out/metadata.json"
tls_verify=true
if [ "${AF_INSECURE:-0}" = 1 ]; then
    tls_verify=false
fi

# Build args from the file, into this script's environment; the builder gets `--build-arg NAME`
# only and reads the value from its environment (buildah and docker both do), so no value ever
# stands on a command line (`ps` shows those to every user of the machine).
set --
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

have_credentials() {
    [ -n "${REGISTRY_USER:-}" ] && [ -n "${REGISTRY_PASSWORD:-}" ]
}

# Registry logins go to a private directory OUTSIDE the workspace (never part of a build
# context), removed when this script ends, however it ends.
secrets_dir=""
cleanup() {
    if [ -n "$secrets_dir" ]; then
        rm -rf "$secrets_dir"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
make_secrets_dir() {
    secrets_dir=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/archfleet-auth.XXXXXX")
}

echo "archfleet: building $AF_PLATFORM on $(uname -m) with $AF_BUILDER (push: $AF_PUSH)"

case "$AF_BUILDER" in
buildah)
    buildah build --platform "$AF_PLATFORM" --file "$AF_DOCKERFILE" "$@" \
        --tag "$AF_LOCAL_REF" "$AF_CONTEXT"
    if [ "$AF_PUSH" != 1 ]; then
        buildah rmi "$AF_LOCAL_REF" >/dev/null 2>&1 || true
        echo "archfleet: $AF_PLATFORM built; not pushed (push is off)"
        exit 0
    fi
    # buildah cannot push to a digest reference it does not know yet: write an OCI layout
    # first (that fixes the digest), then copy it to REPO@DIGEST, digests preserved.
    layout="$out/oci"
    rm -rf "$layout"
    buildah push --digestfile "$out/layout-digest" "$AF_LOCAL_REF" "oci:$layout:image"
    buildah rmi "$AF_LOCAL_REF" >/dev/null 2>&1 || true
    digest=$(cat "$out/layout-digest")
    set -- --quiet --preserve-digests --dest-tls-verify="$tls_verify"
    if have_credentials; then
        make_secrets_dir
        authfile="$secrets_dir/auth.json"
        printf '{}\n' > "$authfile"
        printf '%s\n' "$REGISTRY_PASSWORD" | skopeo login --authfile "$authfile" \
            --tls-verify="$tls_verify" --username "$REGISTRY_USER" --password-stdin \
            "$AF_REGISTRY" >/dev/null
        set -- "$@" --dest-authfile "$authfile"
    fi
    status=0
    skopeo copy "$@" "oci:$layout:image" "docker://$AF_IMAGE@$digest" || status=$?
    rm -rf "$layout"
    [ "$status" = 0 ] || exit "$status"
    printf '%s\n' "$digest" > "$out/digest"
    ;;
buildx)
    if have_credentials; then
        # A private client config, so the credentials do not outlive this build on the agent;
        # the agent's buildx builders and CLI plugins stay visible through links.
        make_secrets_dir
        config="$secrets_dir/docker-config"
        mkdir "$config"
        for shared in buildx cli-plugins; do
            if [ -e "${DOCKER_CONFIG:-$HOME/.docker}/$shared" ]; then
                ln -s "${DOCKER_CONFIG:-$HOME/.docker}/$shared" "$config/$shared"
            fi
        done
        export DOCKER_CONFIG="$config"
        printf '%s\n' "$REGISTRY_PASSWORD" | docker login --username "$REGISTRY_USER" \
            --password-stdin "$AF_REGISTRY" >/dev/null
    fi
    if [ "$AF_PUSH" = 1 ]; then
        output="type=image,name=$AF_IMAGE,push-by-digest=true,name-canonical=true,push=true"
        if [ "$tls_verify" = false ]; then
            output="$output,registry.insecure=true"
        fi
    else
        output="type=cacheonly"
    fi
    docker buildx build --platform "$AF_PLATFORM" --file "$AF_DOCKERFILE" "$@" \
        --output "$output" --metadata-file "$out/metadata.json" "$AF_CONTEXT"
    if [ "$AF_PUSH" != 1 ]; then
        rm -f "$out/metadata.json"
        echo "archfleet: $AF_PLATFORM built; not pushed (push is off)"
    fi
    ;;
*)
    echo "archfleet: unknown builder '$AF_BUILDER' (buildx or buildah)" >&2
    exit 2
    ;;
esac
