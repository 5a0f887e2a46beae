# --- merge: every arch's digest into one index, under every tag at once -------------------------
# ARCHFLEET_MERGE_MODE is `release` (protected refs: the release tags) or `scratch` (merge
# requests and unprotected refs: only the scratch tag). archfleet merge-manifest reads and checks
# every child first and writes the index once per tag, last.

archfleet_valid_tag() {
  printf '%s\n' "$1" | grep -Eq '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'
}

# v1.4.2 -> 1.4.2 1.4 1; v2.0.0-rc.1 -> 2.0.0-rc.1 only; anything else -> nothing.
archfleet_semver_tags() {
  archfleet_version=${1#v}
  archfleet_version=${archfleet_version%%+*}
  archfleet_core=${archfleet_version%%-*}
  archfleet_pre=${archfleet_version#"$archfleet_core"}
  printf '%s\n' "$archfleet_core" | grep -Eq '^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$' || return 0
  case "$archfleet_pre" in
    '') ;;
    -*) printf '%s\n' "$archfleet_pre" | grep -Eq '^-[0-9A-Za-z.-]+$' || return 0 ;;
  esac
  echo "$archfleet_core$archfleet_pre"
  if [ -z "$archfleet_pre" ]; then
    echo "${archfleet_core%.*}"
    echo "${archfleet_core%%.*}"
  fi
}

# The release tags of this pipeline, one per line, each once.
archfleet_release_tags() {
  {
    archfleet_list words "${ARCHFLEET_TAGS:-}"
    if archfleet_option tag_latest && [ -n "${CI_COMMIT_BRANCH:-}" ] \
      && [ "$CI_COMMIT_BRANCH" = "${CI_DEFAULT_BRANCH:-}" ]; then
      echo latest
    fi
    if archfleet_option tag_semver && [ -n "${CI_COMMIT_TAG:-}" ]; then
      archfleet_semver_tags "$CI_COMMIT_TAG"
    fi
  } | awk 'NF && !seen[$0]++'
}

archfleet_merge_tags() {
  case "${ARCHFLEET_MERGE_MODE:-}" in
    release)
      # The job's rules already keep it out of such pipelines; this holds if they are overridden.
      if [ "${CI_PIPELINE_SOURCE:-}" = merge_request_event ] || [ "${CI_COMMIT_REF_PROTECTED:-}" != true ]; then
        archfleet_fail "release tags move only in pipelines of protected branches and tags, never in merge-request pipelines (CI_PIPELINE_SOURCE=${CI_PIPELINE_SOURCE:-}, CI_COMMIT_REF_PROTECTED=${CI_COMMIT_REF_PROTECTED:-})"
      fi
      archfleet_release_tags
      ;;
    scratch)
      [ -z "${ARCHFLEET_SCRATCH_TAG:-}" ] || echo "$ARCHFLEET_SCRATCH_TAG"
      ;;
    *) archfleet_fail "ARCHFLEET_MERGE_MODE must be release or scratch, not '${ARCHFLEET_MERGE_MODE:-}'" ;;
  esac
}

archfleet_merge() {
  archfleet_platforms=$(archfleet_requested_platforms) || exit 1
  set -- merge-manifest
  for archfleet_platform in $archfleet_platforms; do
    archfleet_arch=$(archfleet_platform_arch "$archfleet_platform")
    archfleet_var="ARCHFLEET_DIGEST_$(archfleet_var_suffix "$archfleet_arch")"
    archfleet_digest=$(printenv "$archfleet_var" || true)
    [ -n "$archfleet_digest" ] \
      || archfleet_fail "no digest for $archfleet_platform: \$$archfleet_var is not set; the $archfleet_arch build job must succeed and publish its dotenv report"
    set -- "$@" --source "$archfleet_platform=@$archfleet_digest"
  done
  archfleet_tags=$(archfleet_merge_tags) || exit 1
  archfleet_targets=""
  for archfleet_tag in $archfleet_tags; do
    archfleet_valid_tag "$archfleet_tag" \
      || archfleet_fail "'$archfleet_tag' is not a valid image tag (letters, digits, _ . -; at most 128; from the tags input or the git ref)"
    archfleet_targets="$archfleet_targets $ARCHFLEET_IMAGE:$archfleet_tag"
    set -- "$@" --target "$ARCHFLEET_IMAGE:$archfleet_tag"
  done
  if [ -z "$archfleet_targets" ]; then
    archfleet_note "no tag to move in this pipeline ($ARCHFLEET_MERGE_MODE): checking the digests only (--dry-run)"
    set -- "$@" --dry-run --target "$ARCHFLEET_IMAGE:archfleet-dry-run"
  fi
  archfleet_option insecure_registry && set -- "$@" --insecure
  archfleet_ensure_archfleet
  archfleet_note "archfleet $*"
  archfleet_index=$(archfleet "$@") || archfleet_fail "archfleet merge-manifest failed"
  archfleet_first=""
  for archfleet_first in $archfleet_targets; do break; done
  {
    echo "ARCHFLEET_INDEX_DIGEST=$archfleet_index"
    echo "ARCHFLEET_TARGET=$archfleet_first"
    echo "ARCHFLEET_TARGETS=${archfleet_targets# }"
    echo "ARCHFLEET_MERGED_PLATFORMS=$(echo $archfleet_platforms | tr ' ' ',')"
  } > "$ARCHFLEET_DOTENV"
  archfleet_note "index $archfleet_index ->${archfleet_targets:- (nothing written)}"
}
