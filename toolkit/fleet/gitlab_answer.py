"""What a GitLab REST error answer says, in one line — whichever of GitLab's shapes it has.

GitLab answers a request it refuses in one of these bodies (gitlabhq/gitlabhq):
- Grape's parameter validation (a parameter missing, of the wrong type, not one of its
  values): lib/api/api.rb `rescue_from Grape::Exceptions::Base { error! e.message }`, which
  Grape's JSON error formatter wraps as a TOP-LEVEL `{"error": "group_id is missing"}`;
  several failures in one message, comma-separated (`runner_type is missing, runner_type
  does not have a valid value`);
- the helpers of lib/api/helpers.rb: `bad_request!(reason)` → `{"message": "400 Bad request -
  <reason>"}`, `forbidden!(reason)` → `{"message": "403 Forbidden - <reason>"}`,
  `not_found!(what)` → `{"message": "404 <what> Not Found"}`, `render_api_error!(text)` →
  `{"message": "<text>"}`;
- a model's validation errors, `render_validation_error!(model)` → `{"message": {"<field>":
  ["<error>", …]}}` (e.g. PUT /runners/:id: `{"message": {"tags_list": ["can not be empty
  when runner is not allowed to pick untagged jobs"]}}`);
- the API guard's OAuth error for a token without the endpoint's scope: `{"error":
  "insufficient_scope", "error_description": "…", "scope": "…"}` (lib/api/api_guard.rb).

python-gitlab hands on `message` or `error` as it is, so a validation error would print as a
Python dict; `error_text` makes each one a sentence that names what was wrong. Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

# bad_request!/forbidden!/unauthorized! prefix the reason with the status, which every
# message of ours names already ("HTTP 400: …").
_STATUS_PREFIX = re.compile(r"^\d{3} [A-Za-z][A-Za-z ]*? - ")
_LIMIT = 300


def error_text(body: Any, raw: str = "") -> str:
    """One line for a GitLab error `body` (parsed JSON), else the start of `raw`."""
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, Mapping):
            return _short(_fields(message))
        if isinstance(message, list):
            return _short("; ".join(str(m) for m in message))
        if message:
            return _short(_STATUS_PREFIX.sub("", str(message)))
        # The OAuth error's description is the sentence; Grape's error has none.
        error = body.get("error_description") or body.get("error")
        if error:
            return _short(str(error))
    return _short(raw) if raw else "no explanation in the answer"


def error_text_of_bytes(data: bytes | str | None) -> str:
    """`error_text` of a raw answer body (python-gitlab's `response_body`)."""
    if data is None:
        return error_text(None)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return error_text(body, text)


def _fields(errors: Mapping[str, Any]) -> str:
    """`{"tags_list": ["can not be empty …"]}` → `tags_list can not be empty …`; ActiveModel's
    `base` errors are about the whole record and read without a field name."""
    parts: list[str] = []
    for field, value in errors.items():
        problems = value if isinstance(value, list) else [value]
        for problem in problems:
            parts.append(str(problem) if field == "base" else f"{field} {problem}")
    return "; ".join(parts) or "validation failed (no field named)"


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _LIMIT else line[: _LIMIT - 3] + "..."
