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

# This pipeline's release version (v1.4.2 -> 1.4.2), when it runs for a semver git tag.
archfleet_release_version() {
  archfleet_option tag_semver && [ -n "${CI_COMMIT_TAG:-}" ] || return 0
  archfleet_semver_tags "$CI_COMMIT_TAG" | sed -n '1p'
}

# 0 when version A (X.Y.Z) is newer than B, by numbers; pre-releases never float.
archfleet_version_newer() {
  printf '%s\n%s\n' "$1" "$2" | awk -F. '
    NR == 1 { split($0, a, "."); next }
    { split($0, b, "."); for (i = 1; i <= 3; i++) if (a[i] + 0 != b[i] + 0) exit !(a[i] + 0 > b[i] + 0); exit 1 }'
}

# The version the index under REF was released as (its org.opencontainers.image.version
# annotation, which the release job writes), empty when the tag does not exist yet.
archfleet_held_version() {
  set -- inspect-manifest --raw --ref "$1"
  archfleet_option insecure && set -- "$@" --insecure
  if ! archfleet_raw=$(archfleet_run_tool "$@" 2>"$ARCHFLEET_JOB_DIR/inspect.err"); then
    if grep -Eqi 'not found|manifest unknown|no such' "$ARCHFLEET_JOB_DIR/inspect.err"; then
      return 0
    fi
    cat "$ARCHFLEET_JOB_DIR/inspect.err" >&2
    archfleet_fail "cannot read what $1 holds, so cannot tell whether moving it goes forward"
  fi
  printf '%s' "$archfleet_raw" | python3 -c 'import json, sys
print(json.load(sys.stdin).get("annotations", {}).get("org.opencontainers.image.version", ""))'
}

# The release tags of this pipeline, one per line, each once.
archfleet_release_tags() {
  archfleet_listed=$(archfleet_list words "${ARCHFLEET_IMAGE_TAGS:-}") || exit 1
  {
    [ -z "$archfleet_listed" ] || printf '%s\n' "$archfleet_listed"
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
      if ! archfleet_protected_pipeline; then
        archfleet_fail "release tags move only in pipelines of protected branches and tags, never in merge-request pipelines or their child pipelines (CI_PIPELINE_SOURCE=${CI_PIPELINE_SOURCE:-}, CI_COMMIT_REF_PROTECTED=${CI_COMMIT_REF_PROTECTED:-}, CI_MERGE_REQUEST_IID=${CI_MERGE_REQUEST_IID:-})"
      fi
      archfleet_release_tags || exit 1
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
  # set -f: words of lists stay words (a tag `v-*` never becomes file names).
  set -f
  for archfleet_platform in $archfleet_platforms; do
    archfleet_arch=$(archfleet_platform_arch "$archfleet_platform")
    archfleet_var="ARCHFLEET_DIGEST_$(archfleet_var_suffix "$archfleet_arch")"
    archfleet_digest=$(printenv "$archfleet_var" || true)
    [ -n "$archfleet_digest" ] \
      || archfleet_fail "no digest for $archfleet_platform: \$$archfleet_var is not set; the $archfleet_arch build job must succeed and publish its dotenv report"
    set -- "$@" --source "$archfleet_platform=@$archfleet_digest"
  done
  archfleet_tags=$(archfleet_merge_tags) || exit 1
  archfleet_ensure_archfleet
  archfleet_job_dir
  archfleet_version=""
  if [ "$ARCHFLEET_MERGE_MODE" = release ]; then
    archfleet_version=$(archfleet_release_version)
  fi
  if [ -n "$archfleet_version" ]; then
    # The index says which release it is: the next release reads it before moving 1.4 or 1.
    set -- "$@" --annotation "org.opencontainers.image.version=$archfleet_version"
  fi
  # Where the index came from (OCI image-spec annotations.md), as registries show it; a variable
  # that is empty or unset is left out. CI_PIPELINE_CREATED_AT is RFC 3339, `2022-01-31T16:47:55Z`
  # (gitlabhq doc/ci/variables/predefined_variables.md), and one value for every job and re-run
  # of the pipeline. These change the index digest, not the version the floating tags compare.
  if [ -n "${CI_PROJECT_URL:-}" ]; then
    set -- "$@" --annotation "org.opencontainers.image.source=$CI_PROJECT_URL"
  fi
  if [ -n "${CI_COMMIT_SHA:-}" ]; then
    set -- "$@" --annotation "org.opencontainers.image.revision=$CI_COMMIT_SHA"
  fi
  if [ -n "${CI_PIPELINE_CREATED_AT:-}" ]; then
    set -- "$@" --annotation "org.opencontainers.image.created=$CI_PIPELINE_CREATED_AT"
  fi
  archfleet_targets=""
  for archfleet_tag in $archfleet_tags; do
    archfleet_valid_tag "$archfleet_tag" \
      || archfleet_fail "'$archfleet_tag' is not a valid image tag (letters, digits, _ . -; at most 128; from the image_tags input or the git ref)"
    # A floating tag (1.4, 1) of this release moves only forward: a backport v1.3.9 after
    # v1.4.2 leaves `1` on 1.4.2.
    case "$archfleet_version" in
      "$archfleet_tag".*)
        archfleet_held=$(archfleet_held_version "$ARCHFLEET_IMAGE:$archfleet_tag") || exit 1
        if [ -n "$archfleet_held" ] && archfleet_version_newer "$archfleet_held" "$archfleet_version"; then
          archfleet_note "$ARCHFLEET_IMAGE:$archfleet_tag holds $archfleet_held, newer than $archfleet_version: left as it is"
          continue
        fi
        ;;
    esac
    archfleet_targets="$archfleet_targets $ARCHFLEET_IMAGE:$archfleet_tag"
    set -- "$@" --target "$ARCHFLEET_IMAGE:$archfleet_tag"
  done
  if [ -z "$archfleet_targets" ]; then
    archfleet_note "no tag to move in this pipeline ($ARCHFLEET_MERGE_MODE): checking the digests only (--dry-run)"
    set -- "$@" --dry-run --target "$ARCHFLEET_IMAGE:archfleet-dry-run"
  fi
  archfleet_option insecure && set -- "$@" --insecure
  archfleet_note "archfleet $*"
  archfleet_index=$(archfleet_run_tool "$@") || archfleet_fail "archfleet merge-manifest failed"
  archfleet_first=""
  for archfleet_first in $archfleet_targets; do break; done
  archfleet_merged=$(echo $archfleet_platforms | tr ' ' ',')
  set +f
  {
    echo "ARCHFLEET_INDEX_DIGEST=$archfleet_index"
    echo "ARCHFLEET_TARGET=$archfleet_first"
    echo "ARCHFLEET_TARGETS=${archfleet_targets# }"
    echo "ARCHFLEET_MERGED_PLATFORMS=$archfleet_merged"
  } > "$ARCHFLEET_DOTENV"
  archfleet_note "index $archfleet_index ->${archfleet_targets:- (nothing written)}"
}
