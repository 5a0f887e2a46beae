"""The doctor's I/O: one SSH command per host, a few bounded HTTP GETs per server. Each probe
returns what it found as a value for the pure evaluations (host.py, gitlab.py, jenkins.py) and
raises nothing a user could cause: a failure to connect is a finding too.

Tokens go into request headers and nowhere else; HTTP redirects are not followed, so GitLab's
PRIVATE-TOKEN header (which requests, unlike Authorization, keeps across hosts) never goes to
another server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import requests
from fabric import Connection

from ..fleet.connect import ConnectError, connect, connection_for, run_script
from ..fleet.facts import FactsError, facts_script, parse_facts
from ..inventory import GitLabSettings, Host, JenkinsSettings
from .answer import Answer
from .gitlab import TOKEN_PATH, VERSION_PATH, GitLabProbe
from .host import SUDO_FRAGMENT, Hop, HostProbe, SshFailure, parse_sudo
from .jenkins import PLUGINS_PATH, ROOT_PATH, JenkinsProbe, credential_path

# The facts command takes seconds, more under QEMU; a doctor waits no longer than this for it.
FACTS_TIMEOUT = 120.0
_TEXT = 400


# --- hosts -------------------------------------------------------------------------------------


def probe_host(host: Host) -> HostProbe:
    """Connect (connect.py: host-key policy, jump host, timeouts), then run the facts script
    and the sudo check in ONE command as the login user."""
    try:
        connection = connect(host)
    except ConnectError as exc:
        return HostProbe(host, ssh=locate_failure(host, str(exc)))
    try:
        login, jump = _hops(connection)
        # As the login user, not through ssh.become: whether sudo works is being asked.
        connection.become = None
        script = facts_script(python=host.has_role("merge-tool")) + SUDO_FRAGMENT
        timeout = min(host.ssh.command_timeout, FACTS_TIMEOUT)
        try:
            result = run_script(connection, script, timeout=timeout, host=host.name)
        except ConnectError as exc:
            return HostProbe(host, error=str(exc), login=login, jump=jump)
        if not result.ok:
            said = (result.stderr.strip() or result.stdout.strip())[-300:]
            return HostProbe(host, error=f"exit {result.exit_code}: {said}", login=login, jump=jump)
        try:
            facts = parse_facts(result.stdout, host=host.name)
        except FactsError as exc:
            return HostProbe(host, error=str(exc), login=login, jump=jump)
        return HostProbe(host, facts=facts, sudo=parse_sudo(result.stdout), login=login, jump=jump)
    finally:
        connection.close()


def _hop(role: Any, connection: Connection) -> Hop:
    return Hop(role, str(connection.host), int(connection.port), str(connection.user))


def _hops(connection: Connection) -> tuple[Hop, Hop | None]:
    gateway = connection.gateway
    jump = _hop("jump host", gateway) if isinstance(gateway, Connection) else None
    return _hop("target", connection), jump


def locate_failure(host: Host, error: str) -> SshFailure:
    """Which hop a failed connection failed at. Without a jump host, the target. With one
    (ssh.jump_host, or a ProxyJump of the ssh config), the jump host is tried on its own, with
    the same user resolution, key, known_hosts and timeouts: if it fails too, it is the one to
    fix, and its own error says why; else the target, reached through it, is."""
    key = host.ssh.key
    try:
        connection = connection_for(host)
    except ConnectError:
        return SshFailure(Hop("target", host.address, host.ssh.port, host.ssh.user), error, key)
    target, jump = _hops(connection)
    if jump is None:
        return SshFailure(target, error, key)
    alone = Host(
        name=f"{host.name} (jump host {jump.address}:{jump.port})",
        address=jump.address,
        roles=host.roles,
        ssh=replace(
            host.ssh,
            jump_host=None,
            user=jump.user,
            port=jump.port,
            given=host.ssh.given | {"user", "port"},
        ),
    )
    try:
        connect(alone).close()
    except ConnectError as exc:
        return SshFailure(jump, str(exc), key)
    return SshFailure(target, error, key, via=jump)


# --- HTTP --------------------------------------------------------------------------------------


class Unreachable(Exception):
    """No HTTP answer at all; the message says why in one line."""


@dataclass(frozen=True)
class Client:
    """GETs against one server's root URL, each bounded by `timeout` seconds (to connect,
    and again between bytes of the answer)."""

    url: str
    timeout: float
    session: requests.Session

    def get(self, path: str, **kwargs: Any) -> Answer:
        try:
            response = self.session.get(
                self.url + path,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            raise Unreachable(f"TLS failed ({_cause(exc)})") from None
        except requests.exceptions.ConnectTimeout:
            raise Unreachable(f"no connection within {self.timeout:g} s") from None
        except requests.exceptions.ReadTimeout:
            raise Unreachable(f"connected, but no answer within {self.timeout:g} s") from None
        except requests.RequestException as exc:
            raise Unreachable(f"connection failed ({_cause(exc)})") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(
            response.status_code,
            body,
            {k.lower(): v for k, v in response.headers.items()},
            response.text[:_TEXT],
        )


def _cause(exc: BaseException) -> str:
    """The OS-level reason inside requests' nested wrapping ("[Errno 111] Connection
    refused"), else the innermost exception's type and message, in one short line."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text) or re.search(
        r"\[SSL[^\]]*\] [^'\")]+", text
    )
    if found:
        return found[0].strip()
    inner: BaseException = exc
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    return f"{type(inner).__name__}: {' '.join(str(inner).split())[:160]}"


def gitlab_token(
    settings: GitLabSettings, env: Mapping[str, str]
) -> tuple[str | None, str | None, str | None]:
    """(token, where it came from, a problem with it), from the same sources and in the same
    order as provision-runners (toolkit/fleet/gitlab_runner.py GitLabRunners.from_settings):
    the environment variable, else python-gitlab's config file. (None, None, None): none."""
    token = env.get(settings.token_env, "")
    if token:
        return token, f"${settings.token_env}", None
    import gitlab
    from gitlab import config as gl_config

    files = [str(settings.config_file)] if settings.config_file else None
    where = (
        f"python-gitlab config file {settings.config_file}"
        if settings.config_file
        else "python-gitlab's default config file"
    )
    if settings.config_section:
        where += f" [{settings.config_section}]"
    try:
        client = gitlab.Gitlab.from_config(settings.config_section, files)
    except gl_config.ConfigError:
        return None, None, None
    if not client.private_token:
        return None, None, None
    if client.url.rstrip("/") != settings.url.rstrip("/"):
        return (
            None,
            where,
            f"{where} is for {client.url}, but gitlab.url is {settings.url}: its token is not "
            "sent elsewhere",
        )
    return str(client.private_token), where, None


def probe_gitlab(
    settings: GitLabSettings, env: Mapping[str, str], *, timeout: float
) -> tuple[GitLabProbe, str | None]:
    """The probe, and the token it used (for the caller to scrub from every message)."""
    url = settings.url.rstrip("/")
    token, source, problem = gitlab_token(settings, env)
    with requests.Session() as session:
        client = Client(url, timeout, session)
        headers = {"PRIVATE-TOKEN": token} if token else {}
        try:
            version = client.get(VERSION_PATH, headers=headers)
            mine = client.get(TOKEN_PATH, headers=headers) if token else None
        except Unreachable as exc:
            return GitLabProbe(url, unreachable=str(exc)), token
    return (
        GitLabProbe(
            url,
            token_source=source,
            token_problem=problem,
            version=version,
            token=mine,
        ),
        token,
    )


def probe_jenkins(
    settings: JenkinsSettings, env: Mapping[str, str], *, timeout: float, has_agents: bool
) -> tuple[JenkinsProbe, str | None]:
    url = settings.url.rstrip("/")
    user, token = env.get(settings.user_env, ""), env.get(settings.token_env, "")
    auth = (user, token) if user and token else None
    with requests.Session() as session:
        client = Client(url, timeout, session)
        try:
            root = client.get(ROOT_PATH, auth=auth)
            if auth is None or root.status in (401, 403):
                return JenkinsProbe(url, authenticated=auth is not None, root=root), token
            plugins = client.get(PLUGINS_PATH, auth=auth)
            credential = (
                client.get(credential_path(settings.credentials_id), auth=auth)
                if has_agents
                else None
            )
        except Unreachable as exc:
            return JenkinsProbe(url, unreachable=str(exc)), token
    return (
        JenkinsProbe(url, authenticated=True, root=root, plugins=plugins, credential=credential),
        token,
    )
