"""Our own check that the shared library runs in the Groovy sandbox (an untrusted, folder-level
library), against the facts in tests/groovy/sandbox/whitelist-facts.json.

The facts are read from script-security's stock whitelist (jenkinsci/script-security-plugin,
src/main/resources/org/jenkinsci/plugins/scriptsecurity/sandbox/whitelists/generic-whitelist at
the commit the file names; each entry carries its line number there). Two checks:
- forbidden constructs (each with why and what to write instead) must not appear in src/ or vars/;
- every method name called in src/ or vars/ must be approved by a cited whitelist entry, be the
  library's own (script-security's ClassLoaderWhitelist allows the library's classes), or be a
  method of Docker Pipeline's `docker` global; every `new X(...)` likewise.
It is a name-level check, not Jenkins' signature resolution: it catches a new call nobody looked
up, and the fixtures under tests/groovy/sandbox/fixtures prove each rule fires.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "jenkins"
SANDBOX = REPO / "tests" / "groovy" / "sandbox"
FACTS_FILE = SANDBOX / "whitelist-facts.json"
FIXTURES = SANDBOX / "fixtures"

# Where a `/` starts a slashy string (a regex literal) rather than a division.
_SLASHY_AFTER = set("=(~,:?!&|{[") | {"return"}
_METHOD_CALL = re.compile(r"\.\s*([A-Za-z_]\w*)\s*[({]")
_CONSTRUCTOR = re.compile(r"\bnew\s+((?:[a-z]\w*\.)*)([A-Z]\w*)\s*\(")
_DECLARED = re.compile(
    r"^\s*(?:@\w+\s+)*(?:(?:public|private|protected|static|final|def)\s+)+"
    r"(?:[\w<>, \[\]?]+\s+)?(\w+)\s*\(",
    re.M,
)
_STATIC_DECLARED = re.compile(
    r"^\s*(?:(?:public|private|protected)\s+)?static\s+[\w<>, \[\]]+\s+(\w+)\s*\(", re.M
)
_CLASS = re.compile(r"^\s*class\s+(\w+)", re.M)
_CLOSURE_START = re.compile(r"\{\s*(?:[\w<>\[\], ]+\s*)?->|\.\s*\w+\s*\(?\s*\{")


@cache
def facts() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FACTS_FILE.read_text(encoding="utf-8"))
    return data


def code_only(source: str) -> str:
    """`source` with comments and string contents blanked (newlines kept, so line numbers
    hold); the code inside a GString's ${...} is kept."""
    out: list[str] = []
    i, n = 0, len(source)
    last = ""  # the last significant token, to tell a slashy string from a division
    while i < n:
        if source.startswith("//", i):
            j = source.find("\n", i)
            i = n if j < 0 else j
            continue
        if source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", source[i:j]))
            i = j
            continue
        quote = next((q for q in ('"""', "'''", '"', "'") if source.startswith(q, i)), None)
        if quote is None and source[i] == "/" and last in _SLASHY_AFTER:
            quote = "/"
        if quote is not None:
            j = i + len(quote)
            kept: list[str] = []
            while j < n and not source.startswith(quote, j):
                if source[j] == "\\":
                    j += 2
                    continue
                if quote[0] == '"' and source.startswith("${", j):
                    depth, k = 1, j + 2
                    while k < n and depth:
                        depth += {"{": 1, "}": -1}.get(source[k], 0)
                        k += 1
                    kept.append(" " + source[j + 2 : k - 1] + " ")
                    j = k
                    continue
                if source[j] == "\n":
                    kept.append("\n")
                j += 1
            out.append("''" + "".join(kept))
            i = j + len(quote)
            last = "'"
            continue
        char = source[i]
        out.append(char)
        if not char.isspace():
            word = re.match(r"\w+", source[i:])
            last = word.group(0) if word and not source[i - 1 : i].isalnum() else char
        i += 1
    return "".join(out)


def _line(code: str, index: int) -> int:
    return code.count("\n", 0, index) + 1


def _closure_bodies(code: str) -> list[tuple[int, str]]:
    bodies = []
    for match in _CLOSURE_START.finditer(code):
        start = code.index("{", match.start())
        depth, k = 1, start + 1
        while k < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[k], 0)
            k += 1
        bodies.append((start, code[start + 1 : k - 1]))
    return bodies


def library_names() -> tuple[set[str], set[str]]:
    """The library's own class names and method names (src/ and vars/)."""
    classes, methods = set(), set()
    for path in sorted((LIBRARY / "src").rglob("*.groovy")) + sorted(
        (LIBRARY / "vars").glob("*.groovy")
    ):
        code = code_only(path.read_text(encoding="utf-8"))
        classes.update(_CLASS.findall(code))
        methods.update(_DECLARED.findall(code))
        if path.parent.name == "vars":
            methods.add(path.stem)
    return classes, methods


def findings(source: str, own_classes: set[str], own_methods: set[str]) -> list[tuple[str, int]]:
    """(rule id, line) for each construct the stock whitelist does not approve."""
    code = code_only(source)
    found: list[tuple[str, int]] = []
    for rule in facts()["forbidden"]:
        if rule["pattern"] is None:
            continue
        for match in re.finditer(rule["pattern"], code):
            if rule["id"] == "jdk-exception":
                name = re.search(r"new\s+(?:java\.lang\.)?(\w+)", match.group(0))
                if name and name.group(1) in own_classes:
                    continue
            found.append((rule["id"], _line(code, match.start())))
    # A closure in a class' static method calling a static method of that class unqualified.
    if _CLASS.search(code):
        statics = set(_STATIC_DECLARED.findall(code))
        for start, body in _closure_bodies(code):
            for name in statics:
                for call in re.finditer(rf"(?<![\w.]){name}\s*\(", body):
                    found.append(
                        (
                            "unqualified-static-call-in-closure",
                            _line(code, start + 1 + call.start()),
                        )
                    )
    approved = {entry["name"] for entry in facts()["approved_methods"]}
    approved |= set(facts()["pipeline_globals"]["names"])
    for match in _METHOD_CALL.finditer(code):
        name = match.group(1)
        if name not in approved and name not in own_methods:
            found.append(("unapproved-method", _line(code, match.start())))
    constructors = {entry["class"] for entry in facts()["approved_constructors"]}
    for match in _CONSTRUCTOR.finditer(code):
        name = match.group(2)
        if name not in constructors and name not in own_classes:
            found.append(("unapproved-constructor", _line(code, match.start())))
    return sorted(set(found), key=lambda f: (f[1], f[0]))


def library_files() -> list[Path]:
    return sorted((LIBRARY / "src").rglob("*.groovy")) + sorted((LIBRARY / "vars").glob("*.groovy"))


# ---------------------------------------------------------------- the facts themselves


def test_facts_cite_the_stock_whitelist() -> None:
    data = facts()
    assert data["source"]["repository"] == "jenkinsci/script-security-plugin"
    assert re.fullmatch(r"[0-9a-f]{40}", data["source"]["commit"])
    assert data["source"]["file"].endswith("sandbox/whitelists/generic-whitelist")
    for entry in data["approved_methods"]:
        kind, _cls, method, *_ = entry["signature"].split(" ")
        assert kind in {"method", "staticMethod"} and method == entry["name"], entry
        assert isinstance(entry["line"], int) and entry["line"] > 0
    for entry in data["approved_constructors"]:
        kind, cls, *_ = entry["signature"].split(" ")
        assert kind == "new" and cls.rsplit(".", 1)[-1] == entry["class"], entry
    for rule in data["forbidden"]:
        assert rule["why"] and rule["instead"], rule
        assert rule["pattern"] is None or re.compile(rule["pattern"])


# ---------------------------------------------------------------- the library passes


@pytest.mark.parametrize("path", library_files(), ids=lambda p: str(p.relative_to(LIBRARY)))
def test_the_library_uses_only_approved_signatures(path: Path) -> None:
    classes, methods = library_names()
    assert findings(path.read_text(encoding="utf-8"), classes, methods) == []


def test_the_check_sees_every_call_of_the_library() -> None:
    # Not vacuous: the library's code makes calls the check looked up.
    classes, methods = library_names()
    code = "\n".join(code_only(p.read_text(encoding="utf-8")) for p in library_files())
    used = {m.group(1) for m in _METHOD_CALL.finditer(code)}
    approved = {e["name"] for e in facts()["approved_methods"]}
    assert {"getOrDefault", "parseText", "unmodifiableList", "quoteReplacement"} <= used & approved
    assert {"LibraryError", "Config", "Platforms"} <= classes and "normalise" in methods


# ---------------------------------------------------------------- each rule fires


def fixture_rules() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.groovy"))


def test_every_rule_has_a_fixture() -> None:
    ids = {rule["id"] for rule in facts()["forbidden"]} | {
        "unapproved-method",
        "unapproved-constructor",
    }
    assert set(fixture_rules()) == ids


@pytest.mark.parametrize("rule", fixture_rules())
def test_the_check_fails_on_each_forbidden_construct(rule: str) -> None:
    classes, methods = library_names()
    source = (FIXTURES / f"{rule}.groovy").read_text(encoding="utf-8")
    found = findings(source, classes, methods)
    # The rule fires on each marked line (a line may break another rule too), nowhere else.
    marked = [n for n, line in enumerate(source.splitlines(), 1) if "// FORBIDDEN" in line]
    assert marked and all((rule, n) in found for n in marked), found
    assert sorted({n for _, n in found}) == marked, found


@pytest.mark.parametrize(
    "snippet",
    [
        "throw new LibraryError('x')",
        "throw new Exception('x')",
        "def t = new JsonSlurper().parseText(s)",
        "Collections.unmodifiableList([1, 2])",
        "// JsonSlurperClassic and .asImmutable() in a comment",
        "String m = 'new IllegalStateException(x) and .take(3) in a string'",
        "def re = /\\.take\\(/",
        "String arch = ALIASES.getOrDefault(k, k)",
        "echo \"${labels.join(', ')}\"",
    ],
)
def test_the_check_accepts(snippet: str) -> None:
    classes, methods = library_names()
    assert findings(snippet, classes, methods) == []


def test_gstring_code_is_checked() -> None:
    classes, methods = library_names()
    assert findings('echo "${names.reverse()}"', classes, methods) == [("unapproved-method", 1)]
