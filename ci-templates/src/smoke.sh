# --- smoke: on the arch's own runner, pull the merged tag as that platform and run it --------

archfleet_smoke() {
  if [ -z "${ARCHFLEET_TARGET:-}" ]; then
    archfleet_note "no tag was written in this pipeline: nothing to run"
    return 0
  fi
  archfleet_tls=true
  archfleet_option insecure && archfleet_tls=false
  case "${ARCHFLEET_BUILDER:-}" in
    buildx)
      archfleet_docker_env
      archfleet_login docker
      archfleet_out=$(docker run --rm --pull always --platform "$ARCHFLEET_PLATFORM" \
        --entrypoint sh "$ARCHFLEET_TARGET" -c "$ARCHFLEET_SMOKE_COMMAND") \
        || archfleet_fail "'$ARCHFLEET_SMOKE_COMMAND' failed in $ARCHFLEET_TARGET as $ARCHFLEET_PLATFORM"
      ;;
    buildah)
      archfleet_buildah_env
      archfleet_login buildah
      set -- from --quiet --pull=always --tls-verify="$archfleet_tls" --os "$ARCHFLEET_OS" \
        --arch "$ARCHFLEET_ARCHITECTURE"
      [ -n "${ARCHFLEET_VARIANT:-}" ] && set -- "$@" --variant "$ARCHFLEET_VARIANT"
      archfleet_ctr=$(buildah "$@" "docker://$ARCHFLEET_TARGET") \
        || archfleet_fail "buildah could not pull $ARCHFLEET_TARGET as $ARCHFLEET_PLATFORM"
      # The command writes its output itself, on a bind mount: buildah run's chroot isolation
      # relays stdout through a goroutine that its chroot runtime does not wait for
      # (chroot/run_common.go runUsingChrootMain), so `$(buildah run ...)` loses it now and then
      # (jenkins/resources/archfleet/build.sh does the same). In the job's private directory
      # (0700; removed by its trap and by after_script, also when the job is cancelled), the
      # mounted one 0777: an image's non-root USER writes there too.
      archfleet_job_dir
      archfleet_dir="$ARCHFLEET_JOB_DIR/smoke"
      mkdir -m 0777 "$archfleet_dir"
      archfleet_status=0
      buildah run --volume "$archfleet_dir:/.archfleet-smoke" "$archfleet_ctr" -- \
        sh -c 'sh -c "$1" > /.archfleet-smoke/stdout 2> /.archfleet-smoke/stderr' \
        archfleet-smoke "$ARCHFLEET_SMOKE_COMMAND" || archfleet_status=$?
      buildah rm "$archfleet_ctr" >/dev/null 2>&1 || true
      [ -f "$archfleet_dir/stderr" ] && cat "$archfleet_dir/stderr" >&2
      archfleet_out=$(cat "$archfleet_dir/stdout" 2>/dev/null || true)
      [ "$archfleet_status" = 0 ] \
        || archfleet_fail "'$ARCHFLEET_SMOKE_COMMAND' failed in $ARCHFLEET_TARGET as $ARCHFLEET_PLATFORM"
      ;;
    *) archfleet_fail "builder must be buildx or buildah, not '${ARCHFLEET_BUILDER:-}'" ;;
  esac
  printf '%s\n' "$archfleet_out"
  archfleet_last=$(printf '%s\n' "$archfleet_out" | tail -n 1)
  # When the command prints a machine name (the default, `uname -m`), it must be this platform's.
  if archfleet_ran_as=$(archfleet_uname_platform "$archfleet_last"); then
    [ "$archfleet_ran_as" = "$ARCHFLEET_PLATFORM" ] \
      || archfleet_fail "$ARCHFLEET_TARGET pulled as $ARCHFLEET_PLATFORM runs as $archfleet_last ($archfleet_ran_as)"
  fi
  archfleet_note "$ARCHFLEET_TARGET as $ARCHFLEET_PLATFORM: '$ARCHFLEET_SMOKE_COMMAND' -> $archfleet_last"
}
