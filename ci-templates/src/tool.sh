# --- tool: the archfleet that preflight, merge and verify run, and its version ------------------
# ARCHFLEET_COMPONENT_VERSION, ARCHFLEET_UNPUBLISHED_IMAGE, ARCHFLEET_INSTALL_PATTERN and
# archfleet_tool_lock are generated (above) from toolkit/__init__.py, toolkit/ci_templates.py and
# ci-templates/image/requirements.txt.

# The job's image as messages name it: the archfleet_image input (ARCHFLEET_MERGE_IMAGE).
archfleet_tool_image() {
  printf '%s\n' "${ARCHFLEET_MERGE_IMAGE:-${CI_JOB_IMAGE:-(no image)}}"
}

archfleet_unpublished_hint() {
  if [ "$(archfleet_tool_image)" = "$ARCHFLEET_UNPUBLISHED_IMAGE" ]; then
    printf ' %s' "These templates were not published with publish-templates, which sets archfleet_image's default to the archfleet $ARCHFLEET_COMPONENT_VERSION tool image in the templates project's registry."
  fi
}

# archfleet_install: one archfleet wheel and its sha256, as one pip requirement line. pip installs
# it in hash-checking mode, with the dependencies pinned by this component version, into a
# virtualenv of this job: nothing by a bare name, nothing without its hash, no sdist built, no
# system Python touched (a shell runner's, or a distribution's externally managed one).
archfleet_install_tool() {
  # The same pattern as the input's regex (which GitLab checks at pipeline creation); the include
  # variant's ARCHFLEET_INSTALL variable has no other check. The value is not echoed: a URL in it
  # may carry a token.
  if [ "$(printf '%s' "$ARCHFLEET_INSTALL" | wc -l)" -ne 0 ] \
    || ! printf '%s\n' "$ARCHFLEET_INSTALL" | grep -Eq "$ARCHFLEET_INSTALL_PATTERN"; then
    case "$ARCHFLEET_INSTALL" in
      *--hash=sha256:*) archfleet_problem="is not one line of that form" ;;
      *) archfleet_problem="has no --hash=sha256:<64 hex digits>: a package name, or a wheel without its hash, is never installed" ;;
    esac
    archfleet_fail "archfleet_install (ARCHFLEET_INSTALL) $archfleet_problem. Expected one archfleet wheel pinned by its sha256: 'https://HOST/PATH/archfleet-$ARCHFLEET_COMPONENT_VERSION-py3-none-any.whl --hash=sha256:<64 hex digits>' (or the wheel's path in the project instead of the URL); or leave archfleet_install empty and use the archfleet tool image (archfleet_image)."
  fi
  command -v python3 >/dev/null 2>&1 \
    || archfleet_fail "archfleet_install needs python3 (with pip 22.3 or later) in the job image $(archfleet_tool_image); or leave it empty and use the archfleet tool image (archfleet_image)"
  # In the job's private directory, removed when the job's shell exits (and by after_script):
  # on a shell runner /tmp outlives the job.
  archfleet_job_dir
  archfleet_tool_dir="$ARCHFLEET_JOB_DIR/tool"
  mkdir "$archfleet_tool_dir" \
    || archfleet_fail "cannot create a directory for archfleet_install under $ARCHFLEET_JOB_DIR"
  { archfleet_tool_lock; printf '%s\n' "$ARCHFLEET_INSTALL"; } > "$archfleet_tool_dir/requirements.txt"
  python3 -m venv --without-pip "$archfleet_tool_dir/venv" \
    || archfleet_fail "python3 -m venv failed in $(archfleet_tool_image) (archfleet_install needs the venv module)"
  archfleet_note "archfleet_install: pip in hash-checking mode (--require-hashes, wheels only)"
  python3 -m pip --python "$archfleet_tool_dir/venv/bin/python" install --require-hashes \
    --only-binary :all: --no-input --disable-pip-version-check --quiet \
    -r "$archfleet_tool_dir/requirements.txt" >&2 \
    || archfleet_fail "pip did not install archfleet_install (see its message above: a hash that does not match, a dependency this component does not pin, or pip older than 22.3 without --python)"
  PATH="$archfleet_tool_dir/venv/bin:$PATH"
  export PATH
}

archfleet_ensure_archfleet() {
  if [ -n "${ARCHFLEET_INSTALL:-}" ]; then
    archfleet_install_tool
  fi
  command -v archfleet >/dev/null 2>&1 \
    || archfleet_fail "archfleet is not on PATH in the job image $(archfleet_tool_image): set the archfleet_image input (ARCHFLEET_MERGE_IMAGE) to the archfleet $ARCHFLEET_COMPONENT_VERSION tool image, or archfleet_install to its wheel pinned by sha256.$(archfleet_unpublished_hint)"
}

# The tool must be the version this component was rendered for: the job scripts and the
# archfleet commands they call change together.
archfleet_check_version() {
  archfleet_reported=$(archfleet --version) \
    || archfleet_fail "'archfleet --version' failed in the job image $(archfleet_tool_image) (see above)"
  archfleet_reported=$(printf '%s\n' "$archfleet_reported" | sed -n '1p')
  if [ "$archfleet_reported" != "archfleet $ARCHFLEET_COMPONENT_VERSION" ]; then
    archfleet_fail "version mismatch: this component is archfleet $ARCHFLEET_COMPONENT_VERSION, but the archfleet in the job image $(archfleet_tool_image) is '${archfleet_reported#archfleet }'. Set the archfleet_image input (ARCHFLEET_MERGE_IMAGE) to the archfleet $ARCHFLEET_COMPONENT_VERSION tool image (or archfleet_install to that version's wheel), or include the component version that matches the tool. Nothing was built.$(archfleet_unpublished_hint)"
  fi
}

# The first job of the pipeline (stage .pre): the builds start only once the tool that will merge
# and verify them is there and is this version.
archfleet_preflight() {
  archfleet_ensure_archfleet
  archfleet_check_version
  archfleet_note "preflight: $(command -v archfleet) is archfleet $ARCHFLEET_COMPONENT_VERSION, as this component expects (image $(archfleet_tool_image))"
}
