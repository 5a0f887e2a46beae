"""Jenkins checks, pure: what three GETs answered (JenkinsProbe) -> Check rows.

The sources these follow:
- The version: every answer of Jenkins' remote API carries `X-Jenkins: <version>`
  (jenkinsci/jenkins core/src/main/java/hudson/model/Api.java `setHeaders`), and so does the
  403 an anonymous request gets (core/src/main/java/hudson/security/
  HudsonAuthenticationEntryPoint.java -> `Functions.advertiseHeaders`).
- The plugins: `GET /pluginManager/api/json?depth=1` (core/src/main/java/hudson/
  PluginManager.java: `getApi()` checks Overall/SystemRead, so 403 without it; `getPlugins()`
  exported, each hudson/PluginWrapper with `shortName`, `longName`, `version`, `active`,
  `enabled`).
- The agents' SSH credentials: `GET /credentials/store/system/domain/_/credential/<id>/api/json`
  (jenkinsci/credentials-plugin CredentialsStoreAction.java, CredentialsWrapper: `id`,
  `displayName`, `typeName` — "SSH Username with private key" for ssh-credentials'
  BasicSSHUserPrivateKey — `description`); 404 when the system store's global domain has no
  such id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from ..inventory import JenkinsSettings
from .answer import Answer
from .checks import NOT_CHECKED_NO_TOKEN, Check, blocker, ok, warn

ROOT_PATH = "/api/json?tree=mode"
PLUGINS_PATH = "/pluginManager/api/json?depth=1"
SSH_KEY_TYPE = "SSH Username with private key"
# Jenkins 2.545 (and LTS 2.555.1) refuse agents on a Java older than 21 (toolkit/fleet/java.py).
JAVA_21_FROM = (2, 545)


def credential_path(credentials_id: str) -> str:
    return (
        f"/credentials/store/system/domain/_/credential/{quote(credentials_id, safe='')}/api/json"
    )


@dataclass(frozen=True)
class Needed:
    """A plugin the step or the agents need; any one of `names` will do (a plugin renamed:
    workflow-cps-global-lib became pipeline-groovy-lib). Not `required`: a warning."""

    names: tuple[str, ...]
    title: str
    why: str
    required: bool = True
    agents_only: bool = False


PLUGINS: tuple[Needed, ...] = (
    Needed(
        ("ssh-slaves",),
        "SSH Build Agents",
        "the agents' SSH launcher (hudson.plugins.sshslaves.SSHLauncher)",
        agents_only=True,
    ),
    Needed(
        ("pipeline-groovy-lib", "workflow-cps-global-lib"),
        "Pipeline: Groovy Libraries",
        "loads the archfleet shared library",
    ),
    Needed(("workflow-cps",), "Pipeline: Groovy", "runs Jenkinsfiles and the step"),
    Needed(("workflow-job",), "Pipeline: Job", "pipeline jobs"),
    Needed(("workflow-durable-task-step",), "Pipeline: Nodes and Processes", "node and sh"),
    Needed(("credentials-binding",), "Credentials Binding", "withCredentials for the registry"),
    Needed(("git",), "Git", "the library's Git source (publish-jenkins-library)"),
    Needed(
        ("docker-workflow",),
        "Docker Pipeline",
        "docker.image().inside, for the step's archfleetImage",
        required=False,
    ),
    Needed(
        ("pipeline-milestone-step",),
        "Pipeline: Milestone Step",
        "multiArchBuild calls milestone() before its merge, so an older build never moves a "
        "tag after a newer one",
    ),
    Needed(
        ("lockable-resources",),
        "Lockable Resources",
        "optional: serialises release builds",
        required=False,
    ),
)


@dataclass(frozen=True)
class Plugin:
    short_name: str
    version: str
    active: bool
    enabled: bool


@dataclass(frozen=True)
class JenkinsProbe:
    """`unreachable`: why nothing answered; `authenticated`: a user and an API token were
    there to send (else only the anonymous root answer was asked for)."""

    url: str
    unreachable: str | None = None
    authenticated: bool = False
    root: Answer | None = None
    plugins: Answer | None = None
    credential: Answer | None = None


def parse_plugins(body: object) -> dict[str, Plugin]:
    found: dict[str, Plugin] = {}
    entries = body.get("plugins") if isinstance(body, Mapping) else None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and entry.get("shortName"):
            name = str(entry["shortName"])
            found[name] = Plugin(
                name,
                str(entry.get("version") or ""),
                bool(entry.get("active", False)),
                bool(entry.get("enabled", False)),
            )
    return found


def parse_jenkins_version(text: str) -> tuple[int, ...] | None:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)*)\S*\s*", text)
    return tuple(int(p) for p in found[1].split(".")) if found else None


def evaluate_jenkins(
    settings: JenkinsSettings, probe: JenkinsProbe, *, has_agents: bool
) -> list[Check]:
    """Rows: reachable, version, each needed plugin, the agents' credentials id."""
    url = probe.url
    if probe.unreachable is not None:
        return [
            blocker(
                "jenkins",
                url,
                f"cannot reach Jenkins: {probe.unreachable}",
                "check jenkins.url, that Jenkins is up, and the network or proxy between",
            )
        ]
    root = probe.root
    assert root is not None, "a reachable Jenkins has answered the root request"
    checks = [ok("jenkins", url, f"answers (HTTP {root.status} on /api/json)")]
    checks.append(_version_check(settings, url, root))
    creds = f"${settings.user_env} / ${settings.token_env}"
    if not probe.authenticated:
        fix = f"set {settings.user_env} and {settings.token_env} (a user's API token)"
        checks.append(warn("jenkins-plugins", url, NOT_CHECKED_NO_TOKEN, fix))
        if has_agents:
            checks.append(warn("jenkins-credentials", url, NOT_CHECKED_NO_TOKEN, fix))
        return checks
    if root.status in (401, 403):
        what = "the user or API token" if root.status == 401 else "the user lacks Overall/Read"
        checks.append(
            blocker(
                "jenkins-auth",
                url,
                f"Jenkins refused {creds} (HTTP {root.status}: {what})",
                f"put a user in {settings.user_env} and that user's API token in "
                f"{settings.token_env} (Jenkins → the user → Security → API Token)",
            )
        )
        return checks
    checks += _plugin_checks(url, probe.plugins, has_agents=has_agents)
    if has_agents:
        checks.append(_credential_check(settings, url, probe.credential))
    return checks


def _version_check(settings: JenkinsSettings, url: str, root: Answer) -> Check:
    text = root.headers.get("x-jenkins", "")
    if not text:
        return warn(
            "jenkins-version",
            url,
            f"no X-Jenkins header in the answer (HTTP {root.status}): is this Jenkins?",
            "check that jenkins.url is the controller's root URL",
        )
    version = parse_jenkins_version(text)
    if version is not None and version >= JAVA_21_FROM and settings.java_version < 21:
        return blocker(
            "jenkins-version",
            url,
            f"Jenkins {text} refuses agents on Java older than 21; jenkins.java_version is "
            f"{settings.java_version}",
            "set jenkins.java_version: 21 (the default) in the inventory",
        )
    return ok("jenkins-version", url, f"Jenkins {text}")


def _plugin_checks(url: str, answer: Answer | None, *, has_agents: bool) -> list[Check]:
    needed = [n for n in PLUGINS if has_agents or not n.agents_only]
    if answer is None or answer.status != 200:
        status = answer.status if answer else "no answer"
        why = " (the user lacks Overall/SystemRead)" if answer and answer.status == 403 else ""
        return [
            warn(
                "jenkins-plugins",
                url,
                f"not checked: GET {PLUGINS_PATH} answered {status}{why}",
                "run doctor with an administrator's API token (publish-jenkins-library needs "
                "one too)",
            )
        ]
    installed = parse_plugins(answer.body)
    problems = [c for c in (_plugin_check(url, n, installed) for n in needed) if c is not None]
    present = [n for n in needed if _working(n, installed) is not None]
    summary = ", ".join(
        f"{plugin.short_name} {plugin.version}"
        for plugin in (_working(n, installed) for n in present)
        if plugin is not None
    )
    rows = [ok("jenkins-plugins", url, f"{len(present)} of {len(needed)} needed: {summary}")]
    return rows + problems


def _working(need: Needed, installed: Mapping[str, Plugin]) -> Plugin | None:
    return next((installed[n] for n in need.names if n in installed and installed[n].active), None)


def _plugin_check(url: str, need: Needed, installed: Mapping[str, Plugin]) -> Check | None:
    """None when the plugin works; else a row for it alone, with its own fix."""
    label = f"{need.title} ({need.names[0]})"
    present = [installed[n] for n in need.names if n in installed]
    if _working(need, installed) is not None:
        return None
    make = blocker if need.required else warn
    if present:
        plugin = present[0]
        return make(
            "jenkins-plugin",
            url,
            f"{label} {plugin.version} is installed but not active"
            f"{' (disabled)' if not plugin.enabled else ''}: needed for {need.why}",
            f"enable {plugin.short_name} under Manage Jenkins → Plugins → Installed plugins, "
            "then restart Jenkins",
        )
    return make(
        "jenkins-plugin",
        url,
        f"{label} is not installed: needed for {need.why}",
        f"install {need.names[0]} (Manage Jenkins → Plugins → Available plugins, or "
        f"jenkins-plugin-cli --plugins {need.names[0]}), then restart Jenkins",
    )


def _credential_check(settings: JenkinsSettings, url: str, answer: Answer | None) -> Check:
    cid = settings.credentials_id
    add = (
        f"add a '{SSH_KEY_TYPE}' credential with ID {cid} (user {settings.agent_user}, the "
        "private key whose public half is in jenkins.agent_authorized_key) under Manage "
        "Jenkins → Credentials → System → Global credentials, or set jenkins.credentials_id"
    )
    if answer is None:
        return warn("jenkins-credentials", url, "not asked", "run doctor again")
    if answer.status == 404:
        return blocker(
            "jenkins-credentials",
            url,
            f"no credentials with ID {cid} in the system store's global domain: the agents' "
            "SSH launcher cannot log in",
            add,
        )
    if answer.status == 403:
        return warn(
            "jenkins-credentials",
            url,
            f"credentials {cid} not readable (HTTP 403: the user lacks Credentials/View)",
            "run doctor with an administrator's API token, or check the ID by hand",
        )
    if answer.status != 200 or not isinstance(answer.body, Mapping):
        return warn(
            "jenkins-credentials",
            url,
            f"GET {credential_path(cid)} answered HTTP {answer.status} ({answer.message})",
            "check the credentials ID by hand under Manage Jenkins → Credentials",
        )
    kind = str(answer.body.get("typeName") or "")
    if kind and kind != SSH_KEY_TYPE:
        return blocker(
            "jenkins-credentials",
            url,
            f"credentials {cid} are a '{kind}', the SSH launcher needs '{SSH_KEY_TYPE}'",
            add,
        )
    return ok("jenkins-credentials", url, f"credentials {cid}: {kind or 'present'}")
