# --- verify: the tag is an index with every platform once, each child really that arch --------

archfleet_verify() {
  if [ -z "${ARCHFLEET_TARGET:-}" ]; then
    archfleet_note "no tag was written in this pipeline: nothing to verify"
    return 0
  fi
  set -- verify-manifest --target "$ARCHFLEET_TARGET" --platforms "$ARCHFLEET_MERGED_PLATFORMS"
  archfleet_option check_binaries && set -- "$@" --check-binaries
  archfleet_option insecure && set -- "$@" --insecure
  archfleet_ensure_archfleet
  archfleet_note "archfleet $*"
  archfleet_run_tool "$@" || archfleet_fail "$ARCHFLEET_TARGET failed verification (see above)"
}
