"""GitLab's check of a string input against its `spec:inputs:regex`, as a STAND-IN for tests.

gitlab-ci-local 4.70.1 does not check `regex:` (its src/parser.ts warns "spec:inputs:regex is
currently not supported" and goes on), so the tests check the component's regexes here, the way
GitLab does (gitlabhq/gitlabhq):

- lib/gitlab/ci/config/interpolation/inputs/base_input.rb: the value checked is the provided
  one, or the default when none is provided (`actual_value`); an input without `default:` is
  required.
- lib/gitlab/ci/config/interpolation/inputs/string_input.rb `validate_regex!`:
  `Gitlab::UntrustedRegexp.new(spec[:regex]).match?(actual_value)`, an unanchored RE2 search;
  the errors are "`NAME` input: default value does not match required RegEx pattern" and
  "... provided value does not match ...".
- doc/ci/yaml/_index.md#specinputsregex: RE2 syntax, no enclosing `/`, checked before variables
  are expanded (the raw text, `$CI_REGISTRY/...`, is what must match).

RE2 comes from google-re2 when it is installed. Without it, Python's `re` stands in, with the one
difference that matters for anchored patterns translated: RE2's `$` (no multi-line flag) matches
only at the end of the text, Python's also before a final newline, so `$` becomes `\\Z`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

try:
    import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]
except ImportError:  # pragma: no cover - depends on the dev environment
    re2 = None

ENGINE = "RE2 (google-re2)" if re2 is not None else "Python re (RE2's $ semantics)"


def _python_pattern(pattern: str) -> str:
    """RE2 -> Python: an unescaped `$` outside a character class is the end of the text."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif in_class:
            out.append(char)
            in_class = char != "]"
        elif char == "[":
            out.append(char)
            in_class = True
        elif char == "$":
            out.append(r"\Z")
        else:
            out.append(char)
    return "".join(out)


def regex_matches(pattern: str, value: str) -> bool:
    """`Gitlab::UntrustedRegexp.new(pattern).match?(value)`: an unanchored search."""
    if re2 is not None:
        return re2.search(pattern, value) is not None
    return re.search(_python_pattern(pattern), value) is not None


def input_errors(name: str, spec: Mapping[str, Any], value: Any = None) -> list[str]:
    """The errors GitLab reports for string input `name` with `spec`, given `value` (None: not
    provided, so the default is checked)."""
    if "default" not in spec and value is None:
        return [f"`{name}` input: required value has not been provided"]
    actual = spec.get("default") if value is None else value
    if not isinstance(actual, str):
        which = "default value" if value is None else "provided value"
        return [f"`{name}` input: {which} is not a string"]
    regex = spec.get("regex")
    if regex is None or regex_matches(regex, actual):
        return []
    which = "default value" if value is None else "provided value"
    return [f"`{name}` input: {which} does not match required RegEx pattern"]
