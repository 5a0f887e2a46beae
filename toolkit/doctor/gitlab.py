"""GitLab checks, pure: what two GETs answered (GitLabProbe) -> Check rows.

The sources these follow (gitlabhq/gitlabhq):
- `GET /api/v4/version` (doc/api/version.md; lib/api/version.rb): authenticated only — 401
  without a valid token; a token needs `api`, `read_api` or `read_user` (`allow_access_with_scope
  :read_user` beside the default API scopes), else 403 `insufficient_scope`. So an answer of
  any kind proves GitLab is reachable, and only a token shows the version.
- `GET /api/v4/personal_access_tokens/self` (doc/api/personal_access_tokens.md "Self-inform",
  GitLab 15.5+; lib/api/personal_access_tokens/self_information.rb): the token's own `scopes`,
  `active`, `revoked`, `expires_at`, whatever its scopes (`allow_access_with_scope
  all_available_scopes`); 401 for a token GitLab does not know (invalid, expired, revoked); 400
  "This endpoint requires token type to be a personal access token" for any other kind of
  token (OAuth, CI job token); 404 on a GitLab older than 15.5. Project and group access tokens
  are personal access tokens of a bot user, so they answer like one.
- What provisioning needs (doc/api/users.md#create-a-runner-linked-to-a-user: "An access token
  with the `create_runner` scope"; doc/api/runners.md: `manage_runner` for `/runners/:id`, and
  `read_api` to list runners): `api`, or all three of create_runner, manage_runner, read_api.
- Who may create the runners (doc/api/users.md#create-a-runner-linked-to-a-user: "an
  administrator or have the Owner role for the target namespace or project"; "for
  `instance_type`, you must be an administrator"; app/policies/group_policy.rb enables
  :create_runner for `owner`, app/policies/project_policy.rb for `maintainer_access`):
  `GET /api/v4/user` (`is_admin` is shown to administrators only: lib/api/entities/
  user_with_admin.rb) and `GET /api/v4/groups|projects/:id/members/all/:user_id`
  (doc/api/members.md, inherited memberships included: `access_level` 50 Owner, 40
  Maintainer; 404 for no member).
- The archfleet component's `spec:inputs` of `type: array` need GitLab 16.11.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..inventory import GitLabSettings
from .answer import Answer
from .checks import NOT_CHECKED_NO_TOKEN, Check, blocker, ok, warn

MIN_VERSION = (16, 11)
PROVISION_SCOPES = ("create_runner", "manage_runner", "read_api")
VERSION_PATH = "/api/v4/version"
TOKEN_PATH = "/api/v4/personal_access_tokens/self"  # noqa: S105 - a path
USER_PATH = "/api/v4/user"
# What POST /user/runners needs of a non-administrator, per runner_type (doc/api/members.md
# access levels): a group's Owner, a project's Maintainer.
CREATE_LEVEL = {"group_type": (50, "Owner"), "project_type": (40, "Maintainer")}
LEVELS = {10: "Guest", 20: "Reporter", 30: "Developer", 40: "Maintainer", 50: "Owner"}


@dataclass(frozen=True)
class GitLabProbe:
    """`unreachable`: why no answer came at all; `token_source`: where the token came from
    (None: there is none — then `version` is the answer to an anonymous GET, a 401 that
    proves the server is there); `token_problem`: a token source that was refused before any
    request (e.g. a python-gitlab config file for another URL)."""

    url: str
    unreachable: str | None = None
    token_source: str | None = None
    token_problem: str | None = None
    version: Answer | None = None
    token: Answer | None = None
    # Asked only where runners are provisioned: the token's user, and its membership of
    # the group or project the runners go to (None: not asked, e.g. instance runners or
    # an administrator).
    user: Answer | None = None
    member: Answer | None = None


def _scopes_fix(source: str) -> str:
    return (
        f"create a personal (or group) access token with scopes {', '.join(PROVISION_SCOPES)} "
        f"(or api) and put it in {source}"
    )


def parse_version(text: str) -> tuple[int, int] | None:
    """`16.11.2-ee` -> (16, 11)."""
    found = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(found[1]), int(found[2])) if found else None


def evaluate_gitlab(
    settings: GitLabSettings, probe: GitLabProbe, *, provisions_runners: bool
) -> list[Check]:
    """Rows: reachable, version, token. `provisions_runners`: some host has the gitlab-runner
    role, so the token's scopes matter."""
    url = probe.url
    if probe.unreachable is not None:
        return [
            blocker(
                "gitlab",
                url,
                f"cannot reach GitLab: {probe.unreachable}",
                "check gitlab.url, that GitLab is up, and the network or proxy between "
                "(HTTPS_PROXY, NO_PROXY)",
            )
        ]
    first = probe.version
    reached = ok("gitlab", url, f"answers (HTTP {first.status} on {VERSION_PATH})" if first else "")
    env_hint = f"${settings.token_env}"
    if probe.token_problem is not None:
        return [
            reached,
            blocker("gitlab-token", url, probe.token_problem, _scopes_fix(env_hint)),
        ]
    if probe.token_source is None:
        fix = (
            f"set {env_hint} to a personal access token with scopes "
            f"{', '.join(PROVISION_SCOPES)} (or api), or name a python-gitlab config file "
            "in gitlab.config_file"
        )
        return [
            reached,
            warn("gitlab-version", url, NOT_CHECKED_NO_TOKEN, fix),
            warn("gitlab-token", url, NOT_CHECKED_NO_TOKEN, fix),
        ]
    source = probe.token_source
    if (first is not None and first.status == 401) or (
        probe.token is not None and probe.token.status == 401
    ):
        return [
            reached,
            warn(
                "gitlab-version",
                url,
                "not checked (GitLab refused the token)",
                "fix the token (see gitlab-token)",
            ),
            blocker(
                "gitlab-token",
                url,
                f"GitLab refused the token from {source} (HTTP 401: unknown, expired or revoked)",
                _scopes_fix(source),
            ),
        ]
    checks = [
        reached,
        _version_check(url, first, source),
        _token_check(url, probe.token, source, provisions_runners=provisions_runners),
    ]
    if provisions_runners:
        checks.append(_create_runner_check(settings, probe))
    return checks


def member_path(settings: GitLabSettings, user_id: object) -> str | None:
    """Where the token's user's membership of the runners' scope is asked; None for
    instance runners (only an administrator may create them: nothing to look up)."""
    from urllib.parse import quote

    if settings.runner_type == "group_type" and settings.group:
        return f"/api/v4/groups/{quote(settings.group, safe='')}/members/all/{user_id}"
    if settings.runner_type == "project_type" and settings.project:
        return f"/api/v4/projects/{quote(settings.project, safe='')}/members/all/{user_id}"
    return None


def _create_runner_check(settings: GitLabSettings, probe: GitLabProbe) -> Check:
    """May the token's user create this inventory's runners (POST /user/runners)?"""
    url, kind = probe.url, settings.runner_type
    scope = (
        f"group {settings.group}"
        if kind == "group_type"
        else f"project {settings.project}"
        if kind == "project_type"
        else "the instance"
    )
    user = probe.user
    if user is None or user.status != 200 or not isinstance(user.body, dict):
        why = f"HTTP {user.status}: {user.message}" if user is not None else "not asked"
        return warn(
            "gitlab-runner-rights",
            url,
            f"not checked (GET {USER_PATH} answered {why})",
            "fix the token (see gitlab-token), then run doctor again",
        )
    name = str(user.body.get("username") or "the token's user")
    if user.body.get("is_admin") is True:
        return ok("gitlab-runner-rights", url, f"{name} is an administrator: may create runners")
    if kind == "instance_type":
        return blocker(
            "gitlab-runner-rights",
            url,
            f"{name} is no administrator, and only an administrator may create instance "
            "runners (POST /user/runners runner_type instance_type)",
            "use an administrator's token, or set gitlab.runner_type: group_type with "
            "gitlab.group (least privilege: the runners serve that group only)",
        )
    level, role = CREATE_LEVEL[kind]
    member = probe.member
    if member is not None and member.status == 404:
        return blocker(
            "gitlab-runner-rights",
            url,
            f"{name} is no member of {scope}: creating its runners needs the {role} role",
            f"give {name} the {role} role in {scope} (or use the token of one who has it)",
        )
    if member is None or member.status != 200 or not isinstance(member.body, dict):
        why = f"HTTP {member.status}: {member.message}" if member is not None else "not asked"
        return warn(
            "gitlab-runner-rights",
            url,
            f"not checked ({name}'s role in {scope}: {why})",
            f"make sure {name} has the {role} role in {scope}",
        )
    has = member.body.get("access_level")
    has_name = LEVELS.get(has, f"access level {has}") if isinstance(has, int) else "unknown"
    if not isinstance(has, int) or has < level:
        return blocker(
            "gitlab-runner-rights",
            url,
            f"{name} is {has_name} in {scope}; creating its runners (POST /user/runners) "
            f"needs {role}",
            f"give {name} the {role} role in {scope} (or use the token of one who has it)",
        )
    return ok("gitlab-runner-rights", url, f"{name} is {has_name} in {scope}: may create runners")


def _version_check(url: str, answer: Answer | None, source: str) -> Check:
    if answer is None:
        return warn("gitlab-version", url, "not asked", "run doctor again")
    if answer.status == 403:
        return warn(
            "gitlab-version",
            url,
            f"not readable with this token (HTTP 403: {answer.message}); it needs api, "
            "read_api or read_user",
            _scopes_fix(source),
        )
    body = answer.body if isinstance(answer.body, dict) else {}
    text = str(body.get("version") or "")
    version = parse_version(text) if answer.status == 200 else None
    if version is None:
        return warn(
            "gitlab-version",
            url,
            f"unexpected answer to GET {VERSION_PATH} (HTTP {answer.status}: "
            f"{answer.message or 'no version'})",
            "check that gitlab.url is GitLab's root URL (no /api/v4, no project path)",
        )
    floor = ".".join(map(str, MIN_VERSION))
    if version < MIN_VERSION:
        return blocker(
            "gitlab-version",
            url,
            f"GitLab {text}: the archfleet CI/CD component's array inputs (spec:inputs "
            f"type: array) need GitLab {floor} or later",
            f"upgrade GitLab to {floor} or later",
        )
    return ok("gitlab-version", url, f"GitLab {text} (>= {floor}: the component's inputs work)")


def _token_check(
    url: str, answer: Answer | None, source: str, *, provisions_runners: bool
) -> Check:
    if answer is None:
        return warn("gitlab-token", url, "not asked", "run doctor again")
    if answer.status in (400, 404):
        why = (
            "GitLab older than 15.5 has no such endpoint, or the token is not a personal "
            "access token"
            if answer.status == 404
            else "the token is not a personal access token (e.g. an OAuth or CI job token)"
        )
        return warn(
            "gitlab-token",
            url,
            f"its scopes cannot be read: GET {TOKEN_PATH} answered HTTP {answer.status} "
            f"({answer.message}); {why}",
            _scopes_fix(source),
        )
    if answer.status != 200 or not isinstance(answer.body, dict):
        return blocker(
            "gitlab-token",
            url,
            f"GET {TOKEN_PATH} answered HTTP {answer.status} ({answer.message})",
            _scopes_fix(source),
        )
    body = answer.body
    scopes = _scopes(body.get("scopes"))
    name = f"token {body.get('name')!r}" if body.get("name") else "the token"
    expires = f", expires {body['expires_at']}" if body.get("expires_at") else ""
    has = f"{name} from {source}: scopes {', '.join(scopes) or 'none'}{expires}"
    if body.get("revoked") or body.get("active") is False:
        return blocker("gitlab-token", url, f"{has}; it is revoked or expired", _scopes_fix(source))
    missing = [] if "api" in scopes else [s for s in PROVISION_SCOPES if s not in scopes]
    if missing and provisions_runners:
        return blocker(
            "gitlab-token",
            url,
            f"{has}; provisioning runners needs {', '.join(missing)} too "
            "(create_runner: POST /user/runners, manage_runner: /runners/:id, read_api: lists)",
            _scopes_fix(source),
        )
    return ok("gitlab-token", url, has)


def _scopes(value: object) -> Sequence[str]:
    return [str(s) for s in value] if isinstance(value, list) else []
