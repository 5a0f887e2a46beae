# --- common: messages, lists, options, registry login ---------------------------------------
# POSIX sh (dash, busybox ash): the job images differ (docker:cli is Alpine; the tool image is not).

archfleet_fail() {
  printf 'archfleet: error: %s\n' "$*" >&2
  exit 1
}

archfleet_note() {
  printf 'archfleet: %s\n' "$*" >&2
}

# Items of a list, one per line. A component input array arrives as text like
# `inputs.platforms=["linux/amd64", "linux/arm64"]` (GitLab writes the array into the string);
# a plain variable of the include variant is `linux/amd64 linux/arm64` (MODE words: split on
# blanks and commas) or one item per line (MODE lines, for build args that contain blanks).
archfleet_list() {
  case "$2" in
    *'['*)
      printf '%s\n' "$2" | awk '
        { text = text (NR > 1 ? "\n" : "") $0 }
        END {
          n = length(text); inside = 0; escaped = 0; item = ""
          for (i = 1; i <= n; i++) {
            c = substr(text, i, 1)
            if (!inside) { if (c == "\"") { inside = 1; item = "" }; continue }
            if (escaped) {
              if (c == "n") c = "\n"; else if (c == "t") c = "\t"
              item = item c; escaped = 0; continue
            }
            if (c == "\\") { escaped = 1; continue }
            if (c == "\"") { print item; inside = 0; continue }
            item = item c
          }
        }'
      ;;
    *)
      if [ "$1" = lines ]; then
        printf '%s\n' "$2" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e '/^$/d'
      else
        printf '%s\n' "$2" | tr ', \t' '\n\n\n' | sed -e '/^$/d'
      fi
      ;;
  esac
}

# ARCHFLEET_OPTIONS holds the boolean inputs as `name=true name=false ...`.
archfleet_option() {
  for archfleet_pair in ${ARCHFLEET_OPTIONS:-}; do
    case "$archfleet_pair" in
      "$1="*)
        [ "${archfleet_pair#*=}" = true ]
        return
        ;;
    esac
  done
  return 1
}

archfleet_bool() {
  if archfleet_option "$1"; then echo true; else echo false; fi
}

# `linux/arm-v7` style suffix -> the upper-case part of a variable name (ARM_V7).
archfleet_var_suffix() {
  printf '%s\n' "$1" | tr 'abcdefghijklmnopqrstuvwxyz-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ_'
}

# The requested platforms, canonical, one per line; unknown or repeated ones are refused.
archfleet_requested_platforms() {
  archfleet_items=$(archfleet_list words "${ARCHFLEET_PLATFORMS:-}")
  [ -n "$archfleet_items" ] || archfleet_fail "no platforms requested (input platforms / ARCHFLEET_PLATFORMS is empty)"
  archfleet_seen=" "
  for archfleet_item in $archfleet_items; do
    archfleet_canonical=$(archfleet_platform_canonical "$archfleet_item") \
      || archfleet_fail "unknown platform '$archfleet_item' in platforms; archfleet knows: $ARCHFLEET_KNOWN_PLATFORMS"
    case "$archfleet_seen" in
      *" $archfleet_canonical "*) archfleet_fail "platform $archfleet_canonical is listed twice in platforms" ;;
    esac
    archfleet_seen="$archfleet_seen$archfleet_canonical "
    echo "$archfleet_canonical"
  done
}

archfleet_registry_host() {
  printf '%s\n' "${1%%/*}"
}

# Log TOOL (docker | buildah) in to the image's registry. The password goes through stdin only;
# nothing secret reaches the log. REGISTRY_USER/REGISTRY_PASSWORD win; else the job's
# CI_REGISTRY_* when the image lives in $CI_REGISTRY; else the runner's own credentials.
archfleet_login() {
  archfleet_host=$(archfleet_registry_host "$ARCHFLEET_IMAGE")
  if [ -n "${REGISTRY_USER:-}" ] && [ -n "${REGISTRY_PASSWORD:-}" ]; then
    archfleet_user=$REGISTRY_USER
    archfleet_secret_var=REGISTRY_PASSWORD
  elif [ -n "${CI_REGISTRY:-}" ] && [ "$archfleet_host" = "$CI_REGISTRY" ] && [ -n "${CI_REGISTRY_USER:-}" ]; then
    archfleet_user=$CI_REGISTRY_USER
    archfleet_secret_var=CI_REGISTRY_PASSWORD
  else
    archfleet_note "no login to $archfleet_host (not \$CI_REGISTRY, no REGISTRY_USER): the runner's credentials apply"
    return 0
  fi
  if [ "$1" = buildah ] && [ -z "${REGISTRY_AUTH_FILE:-}" ]; then
    # A job-private auth file: on shell runners the default one outlives the job.
    REGISTRY_AUTH_FILE=$(mktemp "${TMPDIR:-/tmp}/archfleet-auth.XXXXXX")
    # buildah 1.28 refuses an empty auth file ("unexpected end of JSON input").
    printf '{}' >"$REGISTRY_AUTH_FILE"
    export REGISTRY_AUTH_FILE
  fi
  set -- "$1" login --username "$archfleet_user" --password-stdin
  if [ "$1" = buildah ] && archfleet_option insecure_registry; then
    set -- "$@" --tls-verify=false
  fi
  printenv "$archfleet_secret_var" | "$@" "$archfleet_host" >/dev/null \
    || archfleet_fail "login to $archfleet_host as $archfleet_user failed (password from \$$archfleet_secret_var, not shown)"
  archfleet_note "logged in to $archfleet_host as $archfleet_user (password from \$$archfleet_secret_var)"
}
