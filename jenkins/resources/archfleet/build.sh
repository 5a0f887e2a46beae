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
#   AF_CACHE_FROM (space-separated) AF_CACHE_TO: the registry cache refs (cache), as
#          src/archfleet/Config.groovy cacheEnv names them; both unset: no cache options;
#          AF_CACHE_FROM alone (push off, so no login): read the cache, write none
# Output: $AF_OUT/digest (buildah) or $AF_OUT/metadata.json (buildx).
#
# AF_ACTION=smoke runs the smoke instead (smokeCommand; ci-templates/src/smoke.sh does the same
# in the GitLab component), with the builder's own tool and the same private login:
#   AF_SMOKE_REF registry/team/app@sha256:<index>   AF_SMOKE_COMMAND (run with sh -c)
#   AF_PLATFORM AF_OS AF_ARCHITECTURE AF_VARIANT   Output: $AF_OUT/smoke.out (the command's stdout).
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

# A private auth file (containers-auth.json) holding the registry login, made once: buildah
# build (the cache refs) and skopeo copy (the push) read it. Given with --authfile it is the
# ONLY file containers/image reads (pkg/docker/config getAuthFilePaths: a user-specified path
# drops the default ones), so `buildah build` would lose the agent's own logins for private
# base images: it starts as a copy of the first auth file the agent's buildah would read
# (REGISTRY_AUTH_FILE, the runtime dir's, the config dir's, docker's config.json), as the
# GitLab component seeds its job-private file (ci-templates/src/auth.sh), and the push login
# is added to it for the image's registry only.
authfile=""
agent_authfile() {
    # containers/image getPathToAuth: $XDG_RUNTIME_DIR/containers/auth.json, else
    # /run/containers/UID/auth.json.
    if [ -n "${XDG_RUNTIME_DIR:-}" ]; then
        runtime_auth="$XDG_RUNTIME_DIR/containers/auth.json"
    else
        runtime_auth="/run/containers/$(id -u)/auth.json"
    fi
    for candidate in "${REGISTRY_AUTH_FILE:-}" "$runtime_auth" \
        "${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/containers/auth.json" \
        "${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}/config.json"; do
        if [ -n "$candidate" ] && [ -f "$candidate" ] && [ -r "$candidate" ]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}
registry_authfile() {
    if [ -n "$authfile" ]; then
        return 0
    fi
    make_secrets_dir
    authfile="$secrets_dir/auth.json"
    if seed=$(agent_authfile) && ! grep -q -e '"credsStore"' -e '"credHelpers"' "$seed"; then
        cp "$seed" "$authfile"
    else
        # None, or one with a credential helper (the push login would land in the helper).
        printf '{}\n' > "$authfile"
    fi
    printf '%s\n' "$REGISTRY_PASSWORD" | skopeo login --authfile "$authfile" \
        --tls-verify="$tls_verify" --username "$REGISTRY_USER" --password-stdin \
        "$AF_REGISTRY" >/dev/null
}

# A private docker client config holding the registry login, so the credentials do not outlive
# this script on the agent; the agent's buildx builders and CLI plugins stay visible through links.
# It starts as a copy of the agent's config.json (its logins for private base images, as the
# GitLab component's ci-templates/src/auth.sh seeds its own), unless that names a credential
# store or helper: `docker login` would then put the push login into the agent's store.
docker_login_private() {
    make_secrets_dir
    config="$secrets_dir/docker-config"
    mkdir "$config"
    origin="${DOCKER_CONFIG:-$HOME/.docker}"
    for shared in buildx cli-plugins; do
        if [ -e "$origin/$shared" ]; then
            ln -s "$origin/$shared" "$config/$shared"
        fi
    done
    if [ -f "$origin/config.json" ] && [ -r "$origin/config.json" ]; then
        if grep -q -e '"credsStore"' -e '"credHelpers"' "$origin/config.json"; then
            echo "archfleet: $origin/config.json uses a credential store: not copied (the push login" \
                "would land in it); its logins do not apply to this build"
        else
            cp "$origin/config.json" "$config/config.json"
        fi
    fi
    export DOCKER_CONFIG="$config"
    printf '%s\n' "$REGISTRY_PASSWORD" | docker login --username "$REGISTRY_USER" \
        --password-stdin "$AF_REGISTRY" >/dev/null
}

if [ "${AF_ACTION:-build}" = smoke ]; then
    # After the merge, on this platform's own agent: pull the merged index BY DIGEST as this
    # platform and run the command in it (the step then checks a machine name it prints).
    rm -rf "$out/smoke.out" "$out/smoke-run"
    echo "archfleet: smoke run of $AF_SMOKE_REF as $AF_PLATFORM on $(uname -m) with $AF_BUILDER"
    case "$AF_BUILDER" in
    buildah)
        set -- from --quiet --pull=always --tls-verify="$tls_verify" --os "$AF_OS" --arch "$AF_ARCHITECTURE"
        if [ -n "${AF_VARIANT:-}" ]; then
            set -- "$@" --variant "$AF_VARIANT"
        fi
        if have_credentials; then
            registry_authfile
            set -- "$@" --authfile "$authfile"
        fi
        container=$(buildah "$@" "docker://$AF_SMOKE_REF")
        # Not `buildah run ... > smoke.out`: with chroot isolation (BUILDAH_ISOLATION=chroot, as
        # buildah's own images set it) the command's output reaches buildah's stdout through a
        # relay goroutine of buildah-chroot-runtime, which exits as soon as the command has
        # exited without waiting for that relay (chroot/run_common.go runUsingChrootMain, 1.28
        # to today): now and then the output is lost, exit code 0. The command writes its
        # output itself, to files on a bind mount; 0777 so an image's non-root USER can too
        # (the parent directory is 0700, so no other user of the agent reaches it).
        mkdir -m 0777 "$out/smoke-run"
        status=0
        buildah run --volume "$out/smoke-run:/.archfleet-smoke" "$container" -- \
            sh -c 'sh -c "$1" > /.archfleet-smoke/stdout 2> /.archfleet-smoke/stderr' \
            archfleet-smoke "$AF_SMOKE_COMMAND" || status=$?
        buildah rm "$container" >/dev/null 2>&1 || true
        if [ -f "$out/smoke-run/stderr" ]; then
            cat "$out/smoke-run/stderr" >&2
        fi
        if [ -f "$out/smoke-run/stdout" ]; then
            cp "$out/smoke-run/stdout" "$out/smoke.out"
        else
            : > "$out/smoke.out"
        fi
        rm -rf "$out/smoke-run"
        ;;
    buildx)
        if have_credentials; then
            docker_login_private
        fi
        status=0
        docker run --rm --pull always --platform "$AF_PLATFORM" --entrypoint sh "$AF_SMOKE_REF" \
            -c "$AF_SMOKE_COMMAND" > "$out/smoke.out" || status=$?
        ;;
    *)
        echo "archfleet: unknown builder '$AF_BUILDER' (buildx or buildah)" >&2
        exit 2
        ;;
    esac
    cat "$out/smoke.out"
    exit "$status"
fi

# The registry cache options (cache): --cache-from for each ref, --cache-to once. Without
# AF_CACHE_TO (a build that pushes nothing has no login) the cache is only read: a failed read
# costs a rebuild, a write without a login would fail the build.
cache_from=${AF_CACHE_FROM:-}
cache_to=${AF_CACHE_TO:-}
if [ -n "$cache_from" ] && [ -z "$cache_to" ]; then
    echo "archfleet: registry cache read only (push is off: no registry login, nothing written to the cache)"
fi

echo "archfleet: building $AF_PLATFORM on $(uname -m) with $AF_BUILDER (push: $AF_PUSH)"

case "$AF_BUILDER" in
buildah)
    if [ -n "$cache_from$cache_to" ]; then
        # --layers: buildah caches (and so imports or exports) nothing without it. --tls-verify
        # and the login reach the cache refs too (a plain-HTTP lab registry, a private repository).
        set -- "$@" --layers --tls-verify="$tls_verify"
        if have_credentials; then
            registry_authfile
            set -- "$@" --authfile "$authfile"
        fi
        for ref in $cache_from; do
            set -- "$@" --cache-from "$ref"
        done
        if [ -n "$cache_to" ]; then
            set -- "$@" --cache-to "$cache_to"
        fi
    fi
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
        registry_authfile
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
        docker_login_private
    fi
    # The docker driver exports no registry cache: with a cache to write, the agent's builder
    # must be another (docker-container), as the GitLab component creates one.
    for ref in $cache_from; do
        set -- "$@" --cache-from "$ref"
    done
    if [ -n "$cache_to" ]; then
        set -- "$@" --cache-to "$cache_to"
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
