# --- native guard: the job's CPU must be the platform it builds ------------------------------
# `uname -m` is mapped with the table generated from toolkit/archmap.py (above), the same one
# provision-runners uses to tag runners.

archfleet_native_guard() {
  archfleet_machine=$(uname -m)
  archfleet_native=$(archfleet_uname_platform "$archfleet_machine") || archfleet_native="an unknown platform"
  if [ "$archfleet_native" = "$ARCHFLEET_PLATFORM" ]; then
    archfleet_note "native guard: ${CI_JOB_NAME:-this job} runs $ARCHFLEET_PLATFORM on a $archfleet_machine CPU: native"
    return 0
  fi
  archfleet_where="runner '${CI_RUNNER_DESCRIPTION:-?}' (id ${CI_RUNNER_ID:-?}, tags: ${CI_RUNNER_TAGS:-?})"
  if archfleet_option allow_emulation; then
    archfleet_note "native guard: WARNING ${CI_JOB_NAME:-this job} runs $ARCHFLEET_PLATFORM on $archfleet_where, a $archfleet_machine CPU ($archfleet_native): emulated, because allow_emulation is true"
    return 0
  fi
  archfleet_fail "native guard: ${CI_JOB_NAME:-this job} must run $ARCHFLEET_PLATFORM natively, but it landed on $archfleet_where, a $archfleet_machine CPU ($archfleet_native). Tag only $ARCHFLEET_PLATFORM runners with the tag this job asks for, or set allow_emulation: true to accept an emulated build."
}
