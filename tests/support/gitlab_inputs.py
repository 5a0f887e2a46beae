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


# --- how GitLab writes an array input into a string, as a STAND-IN for tests ---------------------
#
# gitlabhq/gitlabhq lib/gitlab/ci/config/interpolation/template.rb, `get_block_value!`: a block
# used inside a string (`inputs.platforms=$[[ inputs.platforms ]]`) becomes
# `node.gsub(match[:block], block.value.to_s)`. For an Array, `to_s` is `inspect` (Ruby's
# Array#inspect: each item's inspect, joined by ", "); the replacement is a plain String, so
# gsub reads its backslash sequences (Ruby's rb_reg_regsub: `\\` one backslash, `\0` `\&` the
# match, `` \` `` before it, `\'` after it, `\1`-`\9` and `\k<name>` groups, anything else kept).
# Text-mode interpolation (text_template.rb) writes `value.to_json` instead: `json.dumps`.

_RUBY_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\f": "\\f",
    "\v": "\\v",
    "\b": "\\b",
    "\a": "\\a",
    "\x1b": "\\e",
}


def ruby_inspect(value: object) -> str:
    """Ruby's inspect of a YAML scalar or a list of them (String#inspect escapes `#` before `{`,
    `$`, `@`, and other control characters as `\\xHH`)."""
    if isinstance(value, list):
        return "[" + ", ".join(ruby_inspect(item) for item in value) + "]"
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        raise TypeError(f"no Ruby inspect for {value!r}")
    out: list[str] = []
    for index, char in enumerate(value):
        following = value[index + 1 : index + 2]
        if char in _RUBY_ESCAPES:
            out.append(_RUBY_ESCAPES[char])
        elif char == "#" and following in ("{", "$", "@"):
            out.append("\\#")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def ruby_gsub_replacement(replacement: str, match: str, pre: str, post: str) -> str:
    """The text Ruby's gsub inserts for a String `replacement` when the pattern (a String) matched
    `match`, between `pre` and `post`."""
    out: list[str] = []
    index = 0
    while index < len(replacement):
        char = replacement[index]
        if char != "\\" or index + 1 == len(replacement):
            out.append(char)
            index += 1
            continue
        nxt = replacement[index + 1]
        if nxt == "\\":
            out.append("\\")
        elif nxt in ("0", "&"):
            out.append(match)
        elif nxt.isdigit():
            pass  # a String pattern has no groups: empty
        elif nxt == "`":
            out.append(pre)
        elif nxt == "'":
            out.append(post)
        elif nxt == "k" and replacement[index + 2 : index + 3] == "<":
            end = replacement.find(">", index)
            if end < 0:
                out.append("\\k")
            else:
                index = end + 1
                continue
        else:
            out.append("\\" + nxt)
        index += 2
    return "".join(out)


def hash_mode_in_string(node: str, name: str, value: object) -> str:
    """`node` with its `$[[ inputs.NAME ]]` block replaced as GitLab's hash-mode interpolation
    does it inside a string (template.rb: `node.gsub(block, value.to_s)`)."""
    block = f"$[[ inputs.{name} ]]"
    at = node.index(block)
    pre, post = node[:at], node[at + len(block) :]
    text = value if isinstance(value, str) else ruby_inspect(value)
    return pre + ruby_gsub_replacement(text, block, pre, post) + post
