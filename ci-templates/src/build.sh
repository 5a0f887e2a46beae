# --- build: one platform, pushed by digest only ------------------------------------------------
# No tag is written here: two arches pushing one tag would overwrite each other, and a tag in a
# merge-request pipeline would be a release. The digest goes on in a dotenv report named after
# the arch (ARCHFLEET_DOTENV), under a variable named after the arch (ARCHFLEET_DIGEST_ARM64).

# The cache ref of BUILDER, [KIND] `unprotected` for the one other pipelines write.
archfleet_cache_ref() {
  archfleet_cache_repo=${ARCHFLEET_CACHE_REPOSITORY:-}
  [ -n "$archfleet_cache_repo" ] || archfleet_cache_repo="$ARCHFLEET_IMAGE/buildcache"
  # One cache per arch: a registry cache ref holds one build's cache, so arches sharing a ref
  # would overwrite each other's.
  archfleet_cache_name=$ARCHFLEET_ARCH
  [ "${2:-}" = unprotected ] && archfleet_cache_name="unprotected-$ARCHFLEET_ARCH"
  if [ "$1" = buildx ]; then
    echo "$archfleet_cache_repo:$archfleet_cache_name"
  else
    echo "$archfleet_cache_repo/$archfleet_cache_name"
  fi
}

# The cache options of BUILDER (one per line: option, value): protected pipelines read and
# write the protected ref; others read it and their own, and write only their own.
archfleet_cache_args() {
  archfleet_ref=$(archfleet_cache_ref "$1")
  archfleet_to=$archfleet_ref
  echo --cache-from
  echo "$archfleet_ref$2"
  if ! archfleet_protected_pipeline; then
    archfleet_to=$(archfleet_cache_ref "$1" unprotected)
    echo --cache-from
    echo "$archfleet_to$2"
  fi
  echo --cache-to
  if [ "$1" = buildx ]; then echo "$archfleet_to,mode=max$2"; else echo "$archfleet_to"; fi
}

archfleet_build() {
  archfleet_requested_platforms >/dev/null || exit 1
  archfleet_build_arg_lines=$(archfleet_build_args) || exit 1
  archfleet_job_dir
  archfleet_work="$ARCHFLEET_JOB_DIR/build"
  mkdir "$archfleet_work"
  case "${ARCHFLEET_BUILDER:-}" in
    buildx) archfleet_docker_env && archfleet_login docker && archfleet_build_buildx "$archfleet_work" ;;
    buildah) archfleet_buildah_env && archfleet_login buildah && archfleet_build_buildah "$archfleet_work" ;;
    *) archfleet_fail "builder must be buildx or buildah, not '${ARCHFLEET_BUILDER:-}'" ;;
  esac
  archfleet_digest=$(cat "$archfleet_work/digest" 2>/dev/null || true)
  case "$archfleet_digest" in
    sha256:????????????????????????????????????????????????????????????????) ;;
    *) archfleet_fail "the $ARCHFLEET_BUILDER build of $ARCHFLEET_PLATFORM left no image digest (got '$archfleet_digest')" ;;
  esac
  printf 'ARCHFLEET_DIGEST_%s=%s\n' "$(archfleet_var_suffix "$ARCHFLEET_ARCH")" "$archfleet_digest" > "$ARCHFLEET_DOTENV"
  rm -rf "$archfleet_work"
  archfleet_note "pushed $ARCHFLEET_PLATFORM as $ARCHFLEET_IMAGE@$archfleet_digest (by digest, no tag)"
}

archfleet_build_buildx() {
  archfleet_dir=$1
  command -v docker >/dev/null 2>&1 \
    || archfleet_fail "docker is not in the job image; builder buildx needs docker with the buildx plugin (input build_image)"
  archfleet_builder=${ARCHFLEET_BUILDX_BUILDER:-archfleet}
  # The docker driver exports no registry cache: use a docker-container builder.
  if ! docker buildx inspect "$archfleet_builder" >/dev/null 2>&1; then
    docker buildx create --name "$archfleet_builder" --driver docker-container >&2 \
      || archfleet_fail "docker buildx create --name $archfleet_builder failed"
  fi
  archfleet_insecure=""
  archfleet_option insecure && archfleet_insecure=",registry.insecure=true"
  # push-by-digest with no tag in name=: buildx refuses a tag together with push-by-digest.
  set -- buildx build --builder "$archfleet_builder" --platform "$ARCHFLEET_PLATFORM" \
    --file "$ARCHFLEET_DOCKERFILE" \
    --provenance="$(archfleet_bool provenance)" --sbom="$(archfleet_bool sbom)" \
    --metadata-file "$archfleet_dir/metadata.json" \
    --output "type=image,name=$ARCHFLEET_IMAGE,push-by-digest=true,name-canonical=true,push=true$archfleet_insecure"
  while IFS= read -r archfleet_arg; do
    [ -n "$archfleet_arg" ] && set -- "$@" --build-arg "$archfleet_arg"
  done <<ARCHFLEET_EOF
$archfleet_build_arg_lines
ARCHFLEET_EOF
  if archfleet_option cache; then
    while IFS= read -r archfleet_opt && IFS= read -r archfleet_val; do
      set -- "$@" "$archfleet_opt" "type=registry,ref=$archfleet_val"
    done <<ARCHFLEET_EOF
$(archfleet_cache_args buildx "$archfleet_insecure")
ARCHFLEET_EOF
  fi
  set -- "$@" "$ARCHFLEET_CONTEXT"
  archfleet_note "docker $(archfleet_show_args "$@")"
  docker "$@" >&2 || archfleet_fail "docker buildx build of $ARCHFLEET_PLATFORM failed"
  awk -F '"' '/"containerimage\.digest"/ { print $4; exit }' "$archfleet_dir/metadata.json" \
    > "$archfleet_dir/digest"
}

archfleet_build_buildah() {
  archfleet_dir=$1
  command -v buildah >/dev/null 2>&1 \
    || archfleet_fail "buildah is not in the job image; builder buildah needs buildah and skopeo (input build_image, e.g. quay.io/containers/aio)"
  command -v skopeo >/dev/null 2>&1 \
    || archfleet_fail "skopeo is not in the job image; builder buildah pushes by digest with skopeo (input build_image, e.g. quay.io/containers/aio)"
  archfleet_tls=true
  archfleet_option insecure && archfleet_tls=false
  if archfleet_option provenance || archfleet_option sbom; then
    archfleet_note "provenance and sbom are buildx attestations; the buildah builder makes none"
  fi
  set -- build --os "$ARCHFLEET_OS" --arch "$ARCHFLEET_ARCHITECTURE"
  [ -n "${ARCHFLEET_VARIANT:-}" ] && set -- "$@" --variant "$ARCHFLEET_VARIANT"
  set -- "$@" --tls-verify="$archfleet_tls" --format oci --file "$ARCHFLEET_DOCKERFILE" \
    --iidfile "$archfleet_dir/iid"
  while IFS= read -r archfleet_arg; do
    [ -n "$archfleet_arg" ] && set -- "$@" --build-arg "$archfleet_arg"
  done <<ARCHFLEET_EOF
$archfleet_build_arg_lines
ARCHFLEET_EOF
  if archfleet_option cache; then
    set -- "$@" --layers
    while IFS= read -r archfleet_opt && IFS= read -r archfleet_val; do
      set -- "$@" "$archfleet_opt" "$archfleet_val"
    done <<ARCHFLEET_EOF
$(archfleet_cache_args buildah "")
ARCHFLEET_EOF
  fi
  set -- "$@" "$ARCHFLEET_CONTEXT"
  archfleet_note "buildah $(archfleet_show_args "$@")"
  buildah "$@" >&2 || archfleet_fail "buildah build of $ARCHFLEET_PLATFORM failed"
  archfleet_image_id=$(cat "$archfleet_dir/iid")
  # buildah cannot push to a digest reference (it recompresses layers, so the digest is not
  # known before the push). Write the exact bytes to an OCI layout first, which gives the
  # digest, then let skopeo push that layout by digest: no tag is ever created.
  buildah push --quiet --format oci --digestfile "$archfleet_dir/digest" \
    "$archfleet_image_id" "oci:$archfleet_dir/layout:image" >&2 \
    || archfleet_fail "buildah push to an OCI layout failed"
  skopeo copy --quiet --preserve-digests --dest-tls-verify="$archfleet_tls" \
    "oci:$archfleet_dir/layout:image" "docker://$ARCHFLEET_IMAGE@$(cat "$archfleet_dir/digest")" >&2 \
    || archfleet_fail "skopeo copy to $ARCHFLEET_IMAGE by digest failed"
  buildah rmi "$archfleet_image_id" >/dev/null 2>&1 || true
}
