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


def test_vars_scripts_are_resources_not_inline_strings() -> None:
    # Every sh in vars/ runs a libraryResource script or a constant single-quoted command.
    source = (LIBRARY / "vars" / "multiArchBuild.groovy").read_text()
    allowed = {
        "buildScript",
        "script: 'uname -m', returnStdout: true",
        "label: 'archfleet --version', script: checkScript, returnStdout: true",
        "label: 'archfleet merge-manifest', script: mergeScript",
        "label: 'registry login for the tool image', script: configScript",
        "label: 'remove the registry login', script: 'rm -rf \"$AF_DOCKER_CONFIG\"'",
    }
    # The arguments up to the closing parenthesis, single-quoted strings taken whole.
    found = re.findall(r"\bsh\s*\(((?:'[^'\n]*'|[^)'\n])*)\)", source)
    assert found and set(found) <= allowed, set(found) - allowed


# ---------------------------------------------------------------- the Groovy sandbox
#
# A folder-level (untrusted) library runs in script-security's sandbox, which allows only
# approved signatures. Facts from jenkinsci/script-security-plugin at a5f0130a,
# src/main/resources/org/jenkinsci/plugins/scriptsecurity/sandbox/whitelists/generic-whitelist:
# - `new java.lang.Exception java.lang.String` is the only approved JDK exception constructor
#   (no IllegalArgumentException, IllegalStateException, RuntimeException, ...); classes of the
#   library itself are always allowed (hence archfleet.LibraryError);
# - `new groovy.json.JsonSlurper` is approved, JsonSlurperClassic is not;
# - `DefaultGroovyMethods asImmutable java.util.Map` is approved, the List/Set/Collection forms
#   are not (use Collections.unmodifiableList, which is).
SANDBOX_RULES: dict[str, re.Pattern[str]] = {
    "JDK exception constructor": re.compile(
        r"\bnew\s+(?:java\.lang\.)?(?!Exception\b|LibraryError\b)\w*(?:Exception|Error)\s*\("
    ),
    "JsonSlurperClassic": re.compile(r"\bJsonSlurperClassic\b"),
    "asImmutable()": re.compile(r"\.asImmutable\s*\("),
}
# What the library still has (issue 12 removes it): this may only shrink.
SANDBOX_BASELINE: dict[tuple[str, str], int] = {
    ("src/archfleet/Digests.groovy", "JsonSlurperClassic"): 2,
    ("src/archfleet/Platforms.groovy", "JsonSlurperClassic"): 2,
}


def sandbox_findings(source: str) -> dict[str, int]:
    lines = (re.sub(r"\s//.*$", "", line) for line in source.splitlines())
    code = "\n".join(line for line in lines if not line.lstrip().startswith(("*", "//", "/*")))
    counts = {rule: len(pattern.findall(code)) for rule, pattern in SANDBOX_RULES.items()}
    return {rule: n for rule, n in counts.items() if n}


@pytest.mark.parametrize(
    "path", groovy_files("vars", "src"), ids=lambda p: str(p.relative_to(LIBRARY))
)
def test_no_new_signature_the_sandbox_rejects(path: Path) -> None:
    name = str(path.relative_to(LIBRARY))
    for rule, count in sandbox_findings(path.read_text()).items():
        assert count <= SANDBOX_BASELINE.get((name, rule), 0), f"{name}: {rule} x{count}"


def test_library_errors_are_sandbox_approved_exceptions() -> None:
    source = (LIBRARY / "src" / "archfleet" / "LibraryError.groovy").read_text()
    assert re.search(r"class LibraryError extends Exception\b", source)
    vars_source = (LIBRARY / "vars" / "multiArchBuild.groovy").read_text()
    caught = re.findall(r"catch\s*\((\w+)", vars_source)
    assert caught and set(caught) == {"LibraryError"}


@pytest.mark.parametrize(
    ("snippet", "rule"),
    [
        ("throw new IllegalArgumentException('x')", "JDK exception constructor"),
        ("throw new java.lang.IllegalStateException(m)", "JDK exception constructor"),
        ("def t = new JsonSlurperClassic().parseText(s)", "JsonSlurperClassic"),
        ("static final List L = [1, 2].asImmutable()", "asImmutable()"),
    ],
)
def test_sandbox_lint_catches(snippet: str, rule: str) -> None:
    assert rule in sandbox_findings(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        "throw new LibraryError('x')",
        "throw new Exception('x')",
        "def t = new JsonSlurper().parseText(s)",
        "Collections.unmodifiableList([1, 2])",
        "// JsonSlurperClassic is not approved",
    ],
)
def test_sandbox_lint_accepts(snippet: str) -> None:
    assert sandbox_findings(snippet) == {}


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
