# --- bases: every base image offers every platform, checked before any build takes a runner ----
# archfleet check-bases reads the Dockerfile's FROM lines (ARG defaults and the build args,
# stages, `--platform=$BUILDPLATFORM` stages, scratch) and asks each base's registry which
# platforms it offers (toolkit/registry/bases.py). --build-platform native: each platform builds
# on its own runner, so a $BUILDPLATFORM stage needs only that platform. Credentials as
# merge-manifest reads a source registry's (toolkit/registry/engine.py other_registry_client):
# docker's config.json, or CI_REGISTRY_USER/_PASSWORD for $CI_REGISTRY only. REGISTRY_USER and
# REGISTRY_PASSWORD are unset for it: check-bases would send them to every base's registry.
archfleet_check_bases() {
  if ! archfleet_option check_bases; then
    archfleet_note "check_bases is off: the base images are not checked before the builds"
    return 0
  fi
  archfleet_platforms=$(archfleet_requested_platforms) || exit 1
  archfleet_build_arg_lines=$(archfleet_build_args) || exit 1
  [ -f "$ARCHFLEET_DOCKERFILE" ] \
    || archfleet_fail "check_bases: the dockerfile input '$ARCHFLEET_DOCKERFILE' is not a file in the checkout ($(pwd)); fix the input, or, when a job of the pipeline writes it after this preflight, set check_bases to false"
  set -- check-bases --platforms "$(echo $archfleet_platforms | tr ' ' ',')" \
    --build-platform native --file "$ARCHFLEET_DOCKERFILE"
  while IFS= read -r archfleet_arg; do
    [ -n "$archfleet_arg" ] && set -- "$@" --build-arg "$archfleet_arg"
  done <<ARCHFLEET_EOF
$archfleet_build_arg_lines
ARCHFLEET_EOF
  archfleet_option insecure && set -- "$@" --insecure
  archfleet_note "archfleet $(archfleet_show_args "$@")"
  env -u REGISTRY_USER -u REGISTRY_PASSWORD archfleet "$@" \
    || archfleet_fail "check_bases: a base image of $ARCHFLEET_DOCKERFILE does not offer every platform of this pipeline, or could not be read (see above). Nothing was built. Use a base that offers them all, drop the platform from the platforms input, or set check_bases to false."
  archfleet_note "check_bases: every base image of $ARCHFLEET_DOCKERFILE offers $(echo $archfleet_platforms | tr ' ' ',')"
}
