# --- auth: registry credentials in job-private files ------------------------------------------

# Job-private client configuration: DOCKER_CONFIG (seeded from an existing config.json, as a
# runner may mount one, and with the cli-plugins of the original place, where buildx may live;
# buildx keeps its builders there too: BUILDX_CONFIG), and REGISTRY_AUTH_FILE for buildah and
# skopeo, written as `{}` first (buildah 1.28 refuses an empty file).
archfleet_private_auth() {
  archfleet_job_dir
  [ -z "${ARCHFLEET_PRIVATE_AUTH:-}" ] || return 0
  archfleet_origin=${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}
  mkdir "$ARCHFLEET_JOB_DIR/docker"
  if [ -f "$archfleet_origin/config.json" ]; then
    cp "$archfleet_origin/config.json" "$ARCHFLEET_JOB_DIR/docker/config.json" \
      || archfleet_fail "cannot read $archfleet_origin/config.json"
  else
    printf '{}' >"$ARCHFLEET_JOB_DIR/docker/config.json"
  fi
  [ -d "$archfleet_origin/cli-plugins" ] && ln -s "$archfleet_origin/cli-plugins" "$ARCHFLEET_JOB_DIR/docker/cli-plugins"
  [ -n "${BUILDX_CONFIG:-}" ] || BUILDX_CONFIG="$archfleet_origin/buildx"
  if [ -n "${REGISTRY_AUTH_FILE:-}" ] && [ -f "$REGISTRY_AUTH_FILE" ]; then
    cp "$REGISTRY_AUTH_FILE" "$ARCHFLEET_JOB_DIR/auth.json" || archfleet_fail "cannot read $REGISTRY_AUTH_FILE"
  else
    printf '{}' >"$ARCHFLEET_JOB_DIR/auth.json"
  fi
  DOCKER_CONFIG="$ARCHFLEET_JOB_DIR/docker"
  REGISTRY_AUTH_FILE="$ARCHFLEET_JOB_DIR/auth.json"
  ARCHFLEET_PRIVATE_AUTH=1
  export DOCKER_CONFIG REGISTRY_AUTH_FILE BUILDX_CONFIG
}

# The credentials for the image's registry, as `archfleet_user` and the name of the variable
# that holds the password (`archfleet_secret_var`); 1 when there are none. Only variables meant
# for this registry: ARCHFLEET_REGISTRY_USER/_PASSWORD (for the image's registry, the only one
# these jobs push to), else the job's CI_REGISTRY_* when the image is in $CI_REGISTRY. The
# generic REGISTRY_USER/REGISTRY_PASSWORD are not read: set in a project for another purpose,
# they would be sent to whatever registry the image names.
archfleet_credentials() {
  archfleet_host=$(archfleet_registry_host "$ARCHFLEET_IMAGE")
  if [ -n "${ARCHFLEET_REGISTRY_USER:-}" ] && [ -n "${ARCHFLEET_REGISTRY_PASSWORD:-}" ]; then
    archfleet_user=$ARCHFLEET_REGISTRY_USER
    archfleet_secret_var=ARCHFLEET_REGISTRY_PASSWORD
  elif [ -n "${CI_REGISTRY:-}" ] && [ "$archfleet_host" = "$CI_REGISTRY" ] && [ -n "${CI_REGISTRY_USER:-}" ]; then
    archfleet_user=$CI_REGISTRY_USER
    archfleet_secret_var=CI_REGISTRY_PASSWORD
  else
    return 1
  fi
}

# Log TOOL (docker | buildah) in to the image's registry, into the job-private configuration.
# The password goes through stdin only; nothing secret reaches the log.
archfleet_login() {
  archfleet_private_auth
  if [ -n "${REGISTRY_USER:-}" ] && [ -z "${ARCHFLEET_REGISTRY_USER:-}" ]; then
    archfleet_note "REGISTRY_USER is not used (it would go to any registry): set ARCHFLEET_REGISTRY_USER and ARCHFLEET_REGISTRY_PASSWORD for $(archfleet_registry_host "$ARCHFLEET_IMAGE")"
  fi
  if ! archfleet_credentials; then
    archfleet_note "no login to $archfleet_host (not \$CI_REGISTRY, no ARCHFLEET_REGISTRY_USER): the runner's credentials apply"
    return 0
  fi
  set -- "$1" login --username "$archfleet_user" --password-stdin
  if [ "$1" = buildah ] && archfleet_option insecure; then
    set -- "$@" --tls-verify=false
  fi
  printenv "$archfleet_secret_var" | "$@" "$archfleet_host" >/dev/null \
    || archfleet_fail "login to $archfleet_host as $archfleet_user failed (password from \$$archfleet_secret_var, not shown)"
  archfleet_note "logged in to $archfleet_host as $archfleet_user (password from \$$archfleet_secret_var; job-private config, removed at the end of the job)"
}

# archfleet (merge, verify) reads REGISTRY_USER/REGISTRY_PASSWORD: give it this registry's
# credentials, and only those, for the one command.
archfleet_run_tool() {
  if archfleet_credentials; then
    REGISTRY_USER=$archfleet_user REGISTRY_PASSWORD=$(printenv "$archfleet_secret_var") archfleet "$@"
  else
    env -u REGISTRY_USER -u REGISTRY_PASSWORD archfleet "$@"
  fi
}
