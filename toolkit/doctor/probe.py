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

from ..fleet.connect import ConnectError, connect, run_script
from ..fleet.facts import FactsError, facts_script, parse_facts
from ..fleet.parallel import own_message
from ..inventory import GitLabSettings, Host, JenkinsSettings
from .answer import Answer
from .gitlab import TOKEN_PATH, USER_PATH, VERSION_PATH, GitLabProbe, member_path
from .host import SUDO_FRAGMENT, Hop, HostProbe, SshFailure, parse_sudo
from .jenkins import PLUGINS_PATH, ROOT_PATH, JenkinsProbe, credential_path
from .tool_image import ToolImageProbe

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
        return HostProbe(host, ssh=locate_failure(host, exc))
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


def locate_failure(host: Host, exc: ConnectError) -> SshFailure:
    """Which hop a failed connection failed at, as connect() found it while opening the hops
    one by one (ConnectError.hop): a jump host, or the target (reached through a jump host,
    `via`, or directly). Before any hop was dialled (e.g. a missing known_hosts file) the
    target is the one named. The message loses its "host: " prefix: the row names the host."""
    error = own_message(host, exc)
    key = host.ssh.key
    found = exc.hop
    if found is None:
        return SshFailure(Hop("target", host.address, host.ssh.port, host.ssh.user), error, key)
    failed = Hop(found.role, found.address, found.port, found.user)
    via = found.via
    jump = Hop("jump host", via.address, via.port, via.user) if via is not None else None
    return SshFailure(failed, error, key, via=jump if found.role == "target" else None)


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


def probe_gitlab(
    settings: GitLabSettings,
    env: Mapping[str, str],
    *,
    timeout: float,
    provisions_runners: bool = False,
) -> tuple[GitLabProbe, str | None]:
    """The probe, and the token it used (for the caller to scrub from every message).
    `provisions_runners`: also ask who the token's user is and its role where the runners go."""
    url = settings.url.rstrip("/")
    from ..fleet.gitlab_runner import find_token  # python-gitlab: only when GitLab is asked

    found = find_token(settings, env)  # as provision-runners finds it
    token, source = found.token, found.source
    problem = None if found.missing else found.problem
    with requests.Session() as session:
        client = Client(url, timeout, session)
        headers = {"PRIVATE-TOKEN": token} if token else {}
        try:
            version = client.get(VERSION_PATH, headers=headers)
            mine = client.get(TOKEN_PATH, headers=headers) if token else None
            user = member = None
            if token and provisions_runners and mine is not None and mine.status != 401:
                user = client.get(USER_PATH, headers=headers)
                body = user.body if user.status == 200 and isinstance(user.body, dict) else {}
                where = member_path(settings, body.get("id")) if "id" in body else None
                if where is not None and body.get("is_admin") is not True:
                    member = client.get(where, headers=headers)
        except Unreachable as exc:
            return GitLabProbe(url, unreachable=str(exc)), token
    return (
        GitLabProbe(
            url,
            token_source=source,
            token_problem=problem,
            version=version,
            token=mine,
            user=user,
            member=member,
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


# --- the tool image ----------------------------------------------------------------------------


def probe_tool_image(
    reference: str, env: Mapping[str, str], *, insecure: bool, timeout: float
) -> ToolImageProbe:
    """GET the image's manifest (for a single-platform image, its config too) with the
    credentials every archfleet registry command finds for that registry
    (registry/auth.py resolve_credentials: REGISTRY_USER, CI_REGISTRY_*, docker's
    config.json), one attempt, each request bounded by `timeout`."""
    from ..registry.auth import CredentialsError, resolve_credentials
    from ..registry.client import (
        AuthError,
        NotFoundError,
        RegistryClient,
        RegistryError,
        RetryPolicy,
        TransportError,
    )
    from ..registry.manifest import ImageIndex, ManifestError, parse_manifest, platform_from_config
    from ..registry.reference import ReferenceError, parse_reference

    try:
        ref = parse_reference(reference)
    except ReferenceError as exc:
        return ToolImageProbe(reference, "", invalid=str(exc))
    registry = ref.registry
    try:
        credentials = resolve_credentials(registry, env)
    except CredentialsError as exc:
        return ToolImageProbe(reference, registry, refused=f"unusable credentials: {exc}")
    source = credentials.source if credentials else None
    client = RegistryClient(
        registry,
        insecure=insecure,
        credentials=credentials,
        use_env_credentials=False,
        retry=RetryPolicy(attempts=1),
        timeout=timeout,
        connections=1,
    )
    found = ToolImageProbe(reference, registry, credentials=source)
    try:
        if ref.digest:
            fetched = client.get_manifest(ref.repository, ref.digest)
        else:
            maybe = client.get_tag(ref.repository, ref.reference)
            if maybe is None:
                return replace(found, missing=True)
            fetched = maybe
        where = str(ref)
        manifest = parse_manifest(fetched.raw, fetched.media_type, where=where)
        if isinstance(manifest, ImageIndex):
            platforms = tuple(
                d.platform
                for d in manifest.manifests
                if d.platform is not None and not d.is_attestation
            )
            return replace(found, platforms=platforms, digest=fetched.digest)
        config = client.get_blob(ref.repository, manifest.config.digest)
        platform = platform_from_config(config, where=f"{where} config")
        return replace(found, platforms=(platform,), digest=fetched.digest, index=False)
    except NotFoundError:
        return replace(found, missing=True)
    except AuthError as exc:
        return replace(found, refused=str(exc))
    except TransportError as exc:
        return replace(found, unreachable=str(exc))
    except (RegistryError, ManifestError) as exc:
        return replace(found, broken=str(exc))
