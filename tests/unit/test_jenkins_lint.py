"""Lints over the shared library's Groovy (jenkins/vars, jenkins/src) for what Jenkins warns about.

- Secrets: a double-quoted (GString) `sh` script that references a credential variable is
  interpolated by Groovy before the shell sees it, so the secret lands in the script text (and in
  process listings). Jenkins' documented rule: single quotes, let the shell expand the variable.
- CPS: closures handed to collection methods (`.each {`, `.collect {` …) in vars/ run under the
  CPS transform; keep such logic in src/ methods marked @NonCPS, and every src method @NonCPS.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[2] / "jenkins"
# Always treated as secret-bearing, whatever the file binds.
DEFAULT_CREDENTIAL_VARIABLES = frozenset({"REGISTRY_USER", "REGISTRY_PASSWORD"})
_BINDING_VARIABLE = re.compile(
    r"\b(?:usernameVariable|passwordVariable|variable|keyFileVariable|passphraseVariable|"
    r"tokenVariable)\s*:\s*['\"](\w+)['\"]"
)
# sh "…", sh("…"), sh(script: "…"), sh """…""", and the same after `script:` in a map.
_SH_DOUBLE_QUOTED = re.compile(r"\bsh\s*\(?\s*(?:[^)]*?\bscript\s*:\s*)?(\"\"\"|\")")
_CPS_UNFRIENDLY = re.compile(
    r"\.(each|eachWithIndex|collect|collectEntries|findAll|find|any|every|sort|inject|"
    r"groupBy|sum|max|min|count|unique)\s*(\(\s*)?\{"
)
_SRC_METHOD = re.compile(
    r"^\s*(?:public\s+|private\s+|protected\s+)?static\s+[\w<>, \[\]]+\s+\w+\s*\("
)


def credential_variables(source: str) -> set[str]:
    return set(DEFAULT_CREDENTIAL_VARIABLES) | set(_BINDING_VARIABLE.findall(source))


def _string_body(source: str, start: int, quote: str) -> str:
    """The text of a Groovy string literal whose opening `quote` ends at `start`."""
    i = start
    while i < len(source):
        if source[i] == "\\":
            i += 2
            continue
        if source.startswith(quote, i):
            return source[start:i]
        i += 1
    return source[start:]


def interpolated_secrets(source: str) -> list[str]:
    """Each double-quoted sh script referencing a credential variable: 'line N: NAME'."""
    names = credential_variables(source)
    problems = []
    for match in _SH_DOUBLE_QUOTED.finditer(source):
        body = _string_body(source, match.end(), match.group(1))
        for name in sorted(names):
            if re.search(rf"\$(?:\{{\s*(?:env\.)?{name}\b|(?:env\.)?{name}\b)", body):
                line = source.count("\n", 0, match.start()) + 1
                problems.append(f"line {line}: {name}")
    return problems


def cps_unfriendly(source: str) -> list[str]:
    return [
        f"line {source.count(chr(10), 0, m.start()) + 1}: .{m.group(1)} {{"
        for m in _CPS_UNFRIENDLY.finditer(source)
    ]


def src_methods_without_noncps(source: str) -> list[str]:
    lines = source.splitlines()
    missing = []
    for number, line in enumerate(lines):
        if _SRC_METHOD.match(line) and "=" not in line.split("(")[0]:
            previous = next((p.strip() for p in reversed(lines[:number]) if p.strip()), "")
            if previous != "@NonCPS":
                missing.append(f"line {number + 1}: {line.strip()}")
    return missing


def groovy_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (LIBRARY / folder).rglob("*.groovy"))


@pytest.mark.parametrize(
    "path", groovy_files("vars", "src"), ids=lambda p: str(p.relative_to(LIBRARY))
)
def test_no_credential_variable_in_a_double_quoted_sh(path: Path) -> None:
    assert interpolated_secrets(path.read_text()) == []


@pytest.mark.parametrize("path", groovy_files("vars"), ids=lambda p: p.name)
def test_vars_keep_closure_heavy_logic_out_of_cps(path: Path) -> None:
    assert cps_unfriendly(path.read_text()) == []


@pytest.mark.parametrize("path", groovy_files("src"), ids=lambda p: p.name)
def test_src_methods_are_noncps(path: Path) -> None:
    assert src_methods_without_noncps(path.read_text()) == []


_SH_CALL = re.compile(r"\bsh\s*\(((?:'[^'\n]*'|\"[^\"\n]*\"|[^)'\"\n]|\n\s*)*)\)")
RESOURCE_SCRIPTS = {
    "buildScript",
    "checkScript",
    "mergeScript",
    "configScript",
    "basesScript",
    "discoverScript",
}


def sh_calls(source: str) -> list[str]:
    """The argument text of every sh(...) call."""
    return _SH_CALL.findall(source)


def test_every_sh_has_a_label_and_runs_a_resource_or_a_constant() -> None:
    # A label names the step in Blue Ocean and the Pipeline Steps view (without it Jenkins shows
    # the script itself, the whole resource); the script is a libraryResource or a constant
    # single-quoted command that turns the `sh -xe` trace off first.
    found = sh_calls((LIBRARY / "vars" / "multiArchBuild.groovy").read_text())
    assert len(found) >= 8
    for arguments in found:
        assert re.search(r"\blabel\s*:", arguments), arguments
        script = re.search(r"\bscript\s*:\s*('[^']*'|\w+)", arguments)
        assert script, arguments
        value = script.group(1)
        assert value in RESOURCE_SCRIPTS or value.startswith("'set +x; "), arguments


def test_sh_lint_sees_a_missing_label() -> None:
    (call,) = sh_calls("sh(script: 'set +x; uname -m', returnStdout: true)")
    assert not re.search(r"\blabel\s*:", call)


def test_library_errors_are_sandbox_approved_exceptions() -> None:
    # The sandbox check itself: tests/unit/test_jenkins_sandbox.py.
    source = (LIBRARY / "src" / "archfleet" / "LibraryError.groovy").read_text()
    assert re.search(r"class LibraryError extends Exception\b", source)
    vars_source = (LIBRARY / "vars" / "multiArchBuild.groovy").read_text()
    caught = re.findall(r"catch\s*\((\w+)", vars_source)
    # LibraryError -> error(message); InterruptedException: the timeout around node (rethrown
    # once the agent was reached); NoSuchMethodError: no Lockable Resources plugin; `e`: the
    # fallback to the emulation label, rethrown once the native agent was reached.
    assert caught and set(caught) == {
        "LibraryError",
        "InterruptedException",
        "NoSuchMethodError",
        "e",
    }


@pytest.mark.parametrize(
    "snippet",
    [
        'sh "echo $REGISTRY_PASSWORD | docker login"',
        'sh("login -p ${REGISTRY_PASSWORD}")',
        'sh(script: "curl -u ${env.REGISTRY_USER}:x", returnStdout: true)',
        'sh """\n  docker login -p $REGISTRY_PASSWORD\n"""',
        "withCredentials([string(credentialsId: 't', variable: 'API_TOKEN')]) {\n"
        '  sh "curl -H \\"Authorization: $API_TOKEN\\" x"\n}',
    ],
)
def test_lint_catches_interpolated_secrets(snippet: str) -> None:
    assert interpolated_secrets(snippet), snippet


@pytest.mark.parametrize(
    "snippet",
    [
        "sh 'echo \"$REGISTRY_PASSWORD\" | docker login --password-stdin'",
        "sh(script: 'docker login -u \"$REGISTRY_USER\"')",
        'sh "echo ${platform}"',
        'echo "user $REGISTRY_USER"',
        'sh """\n  uname -m\n"""',
    ],
)
def test_lint_accepts_shell_expanded_secrets(snippet: str) -> None:
    assert interpolated_secrets(snippet) == []


def test_cps_lint_catches_closures_on_collections() -> None:
    assert cps_unfriendly("platforms.each { p -> echo p }")
    assert cps_unfriendly("def x = list.collect({ it * 2 })")
    assert cps_unfriendly("for (int i = 0; i < list.size(); i++) { echo list[i] }") == []
