"""GitLab's error answers, each shape as its source writes it (toolkit/fleet/gitlab_answer.py
cites the files), made one line naming what was wrong — for the runner client and doctor."""

from __future__ import annotations

import pytest

from toolkit.doctor.answer import Answer
from toolkit.fleet.gitlab_answer import error_text, error_text_of_bytes


@pytest.mark.parametrize(
    ("body", "said"),
    [
        # Grape's parameter validation: top level.
        ({"error": "group_id is missing"}, "group_id is missing"),
        # bad_request!: the status prefix goes (every message names the status already).
        ({"message": "400 Bad request - Missing/invalid group"}, "Missing/invalid group"),
        ({"message": "403 Forbidden - Insufficient permissions"}, "Insufficient permissions"),
        # render_api_error!: as it is.
        (
            {"message": "A file with this name already exists"},
            "A file with this name already exists",
        ),
        ({"message": "404 Runner Not Found"}, "404 Runner Not Found"),
        # render_validation_error!: field and problem, each; `base` without a field name.
        (
            {"message": {"tags_list": ["can not be empty", "Too many tags specified"]}},
            "tags_list can not be empty; tags_list Too many tags specified",
        ),
        ({"message": {"base": ["Runner is orphaned"]}}, "Runner is orphaned"),
        # The API guard's OAuth error: its description.
        (
            {"error": "insufficient_scope", "error_description": "needs more", "scope": "api"},
            "needs more",
        ),
    ],
)
def test_each_shape_is_one_line(body: object, said: str) -> None:
    assert error_text(body) == said


def test_raw_bodies_and_text() -> None:
    assert error_text_of_bytes(b'{"error": "system_id is missing"}') == "system_id is missing"
    assert (
        error_text_of_bytes(b"<html>\n502 Bad Gateway\n</html>") == "<html> 502 Bad Gateway </html>"
    )
    assert error_text_of_bytes(None) == "no explanation in the answer"
    assert (
        len(error_text("x" * 1000)) <= 300
        or error_text("x" * 1000) == "no explanation in the answer"
    )
    assert len(error_text(None, "y" * 1000)) == 300


def test_doctor_reads_the_same_shapes() -> None:
    answer = Answer(400, {"message": "400 Bad request - This endpoint requires token type"})
    assert answer.message == "This endpoint requires token type"
    assert Answer(400, {"message": {"scopes": ["is invalid"]}}).message == "scopes is invalid"
    assert Answer(400, {"error": "id is invalid"}).message == "id is invalid"
    assert Answer(404, None, text="Not  Found\n").message == "Not Found"
