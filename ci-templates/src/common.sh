# --- common: messages, options, the job's private directory -----------------------------------
# POSIX sh (dash, busybox ash): the job images differ (docker:cli is Alpine; the tool image is not).

archfleet_fail() {
  printf 'archfleet: error: %s\n' "$*" >&2
  exit 1
}

archfleet_note() {
  printf 'archfleet: %s\n' "$*" >&2
}

# ARCHFLEET_OPTIONS holds the boolean inputs as `name=true name=false ...`.
archfleet_option() {
  case " ${ARCHFLEET_OPTIONS:-} " in
    *" $1=true "*) return 0 ;;
  esac
  return 1
}

archfleet_bool() {
  if archfleet_option "$1"; then echo true; else echo false; fi
}

# `linux/arm-v7` style suffix -> the upper-case part of a variable name (ARM_V7).
archfleet_var_suffix() {
  printf '%s\n' "$1" | tr 'abcdefghijklmnopqrstuvwxyz-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_'
}

archfleet_registry_host() {
  printf '%s\n' "${1%%/*}"
}

# The job's private directory for credentials and scratch files: a fixed name per job, so that
# after_script (a new shell) removes it as well when the script is cancelled or killed; made
# with mkdir under umask 077, which fails if anything has that name already. On a shell runner
# every job of the runner user shares $HOME and /tmp: nothing secret goes there.
archfleet_job_dir() {
  if [ -n "${ARCHFLEET_JOB_DIR:-}" ] && [ -d "$ARCHFLEET_JOB_DIR" ]; then
    return 0
  fi
  ARCHFLEET_JOB_DIR="${TMPDIR:-/tmp}/archfleet-job-${CI_JOB_ID:-$$}"
  (umask 077 && mkdir "$ARCHFLEET_JOB_DIR") 2>/dev/null \
    || archfleet_fail "cannot create the job's private directory $ARCHFLEET_JOB_DIR (it must not exist yet; TMPDIR=${TMPDIR:-/tmp})"
  trap 'rm -rf "$ARCHFLEET_JOB_DIR"' EXIT
  trap 'rm -rf "$ARCHFLEET_JOB_DIR"; exit 143' HUP INT TERM
}

# The command line for the log, build-arg values left out (they may carry a token).
archfleet_show_args() {
  archfleet_shown=""
  archfleet_hide=false
  for archfleet_word in "$@"; do
    if [ "$archfleet_hide" = true ]; then
      archfleet_word="${archfleet_word%%=*}=..."
      archfleet_hide=false
    fi
    [ "$archfleet_word" = --build-arg ] && archfleet_hide=true
    archfleet_shown="$archfleet_shown $archfleet_word"
  done
  printf '%s\n' "${archfleet_shown# }"
}

# A pipeline of a protected branch or tag, not a merge request: only these write the cache that
# release builds read (as GitLab keeps protected refs' caches apart by default; a merge request
# could otherwise plant layers in the next release) and move release tags. The child pipeline
# of a merge-request pipeline has CI_PIPELINE_SOURCE=parent_pipeline but keeps the merge
# request's variables (gitlab-org/gitlab!23884 passes the merge request to child pipelines), so
# CI_MERGE_REQUEST_IID tells it apart.
archfleet_protected_pipeline() {
  [ "${CI_COMMIT_REF_PROTECTED:-}" = true ] && [ "${CI_PIPELINE_SOURCE:-}" != merge_request_event ] &&
    [ -z "${CI_MERGE_REQUEST_IID:-}" ]
}
