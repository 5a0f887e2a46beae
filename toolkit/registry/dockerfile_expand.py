"""Word expansion in FROM lines and global ARG defaults: BuildKit's shell/lex.go
(moby/buildkit frontend/dockerfile/shell, ProcessWordWithMatches), the subset a base image
name needs. Quotes and the escape token as lex.go processStopOn/processSingleQuote/
processDoubleQuote; `$NAME`, `${NAME}` and the `-`, `+`, `?` modifiers (with or without `:`)
as processDollar. Pattern modifiers (`#`, `%`, `/`) are refused rather than half-supported.
Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class ExpansionError(ValueError):
    pass


@dataclass
class Expanded:
    text: str
    used: set[str] = field(default_factory=set)
    unset: list[str] = field(default_factory=list)


def expand(word: str, env: Mapping[str, str], escape: str = "\\") -> Expanded:
    """shell/lex.go ProcessWordWithMatches for one word; `unset` lists the names a plain
    `$NAME`/`${NAME}` referred to that have no value (expanded to nothing, as BuildKit does)."""
    result = Expanded("")
    result.text = _Lexer(word, env, escape, result).run(stop="")
    return result


class _Lexer:
    def __init__(self, word: str, env: Mapping[str, str], escape: str, out: Expanded) -> None:
        self.word, self.env, self.escape, self.out = word, env, escape, out
        self.pos = 0

    def peek(self) -> str:
        return self.word[self.pos] if self.pos < len(self.word) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def run(self, stop: str) -> str:
        out: list[str] = []
        while self.pos < len(self.word):
            ch = self.peek()
            if stop and ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                out.append(self.single())
            elif ch == '"':
                out.append(self.double())
            else:
                self.pos += 1
                if ch == self.escape:
                    if self.pos >= len(self.word):
                        break
                    ch = self.next()
                out.append(ch)
        if stop:
            raise ExpansionError(f"syntax error: missing {stop!r}")
        return "".join(out)

    def single(self) -> str:
        self.pos += 1
        end = self.word.find("'", self.pos)
        if end < 0:
            raise ExpansionError("unexpected end of statement while looking for matching '")
        text = self.word[self.pos : end]
        self.pos = end + 1
        return text

    def double(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError('unexpected end of statement while looking for matching "')
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape and self.peek() in ('"', "$", self.escape) and self.peek():
                ch = self.next()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        if self.peek().isdigit():
            while self.peek().isdigit():
                self.pos += 1
            return self.word[start : self.pos]
        if self.peek() and self.peek() in "@*#?-$!0":
            return self.next()
        while self.peek() and (self.peek().isalnum() or self.peek() == "_"):
            self.pos += 1
        return self.word[start : self.pos]

    def lookup(self, name: str) -> tuple[str, bool]:
        self.out.used.add(name)
        if name in self.env:
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found:
                self.out.unset.append(name)
            return value
        self.pos += 1
        if not self.peek():
            raise ExpansionError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            value, found = self.lookup(name)
            if not found:
                self.out.unset.append(name)
            return value
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
        if op not in ("-", "+", "?"):
            raise ExpansionError(
                f"${{{name}{':' if null_is_unset else ''}{op}...}}: this substitution is not "
                "supported here (use $NAME, ${NAME}, ${NAME:-word}, ${NAME:+word} or "
                "${NAME:?message})"
            )
        word = self.run(stop="}")
        value, found = self.lookup(name)
        empty = not found or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if empty:
            default = "is not allowed to be unset" if not found else "is not allowed to be empty"
            raise ExpansionError(f"{name}: {word or default}")
        return value
