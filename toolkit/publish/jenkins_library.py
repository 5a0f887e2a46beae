"""Publish the Jenkins shared library: a Global Pipeline Library and an example Pipeline job.

Jenkins' REST API (jenkinsapi) covers jobs: `/createItem`, `/job/<name>/config.xml`. It has no
call for Global Pipeline Libraries, so those go through the script console (`/scriptText`) with
a generated Groovy script that reads (or sets) exactly one library and prints one JSON line.

Data flows one way: read what Jenkins has -> plan (pure: `plan_library`, `plan_job`) -> apply
only what differs. A second run plans "unchanged" everywhere and writes nothing; `--dry-run`
reads and plans. Credentials come from the caller (the environment) and are only handed to
jenkinsapi; no message here contains them.
"""

from __future__ import annotations

import json
import re

# Parses the config.xml of the Jenkins we log in to (expat guards against entity expansion).
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from jenkinsapi.custom_exceptions import JenkinsAPIException
from jenkinsapi.jenkins import Jenkins

from .. import __version__
from ..archmap import export

MANAGED_MARK = "Managed by archfleet publish-jenkins-library"
RESULT_PREFIX = "ARCHFLEET-RESULT "
ARCHES_RESOURCE = Path("resources") / "archfleet" / "arches.json"
# The archfleet version the library needs its merge tool to be (vars/multiArchBuild.groovy
# checks it before any build): the package's own, committed so that Jenkins' checkout has it.
VERSION_RESOURCE = Path("resources") / "archfleet" / "version.txt"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VERSION = re.compile(r"^[A-Za-z0-9._/-]{1,200}$")
_OUTPUT_TAIL = 600

Action = Literal["create", "update", "unchanged"]


class PublishError(RuntimeError):
    """A publish step failed or was refused; the message says what to do, never a secret."""


# ---------------------------------------------------------------- the arch table resource


def render_arches_json() -> str:
    """resources/archfleet/arches.json as the library ships it: toolkit.archmap.export()."""
    return json.dumps(export(), indent=2, sort_keys=True) + "\n"


def write_arches_resource(library_root: Path) -> Path:
    """Regenerate the library's arch table after toolkit/archmap.py changed."""
    path = library_root / ARCHES_RESOURCE
    path.write_text(render_arches_json(), encoding="utf-8")
    return path


def render_version_text() -> str:
    """resources/archfleet/version.txt as the library ships it: toolkit.__version__."""
    return f"{__version__}\n"


def write_version_resource(library_root: Path) -> Path:
    """Regenerate the library's version after toolkit/__init__.py's __version__ changed."""
    path = library_root / VERSION_RESOURCE
    path.write_text(render_version_text(), encoding="utf-8")
    return path


# ---------------------------------------------------------------- what we want


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise PublishError(
            f"{kind} {value!r}: use letters, digits, '.', '_', '-' (no folders, at most 100)"
        )
    return value


def check_remote(remote: str) -> str:
    """A git URL Jenkins can clone; credentials in it are refused (use a Jenkins credential).

    An http(s) URL with any userinfo is refused: `https://TOKEN@host/repo.git` carries a token as
    its user name, and Jenkins would store it in plain text in the library's and the job's
    configuration. For ssh:// a user name is the login (`git@`), only a password is refused.
    """
    if not remote:
        raise PublishError("--library-repo is required: the git URL of the library repository")
    parts = urlsplit(remote)
    web = parts.scheme in ("http", "https")
    if (web and "@" in parts.netloc) or (
        parts.scheme in ("ssh", "git") and parts.password is not None
    ):
        raise PublishError(
            "the repository URL contains credentials (user info before '@'); store them as a "
            "Jenkins credential and pass its id with --library-credentials-id"
        )
    if any(ch.isspace() for ch in remote):
        raise PublishError(f"repository URL {remote!r} contains whitespace")
    return remote


def normalise_library_path(path: str) -> str | None:
    """Jenkins stores libraryPath trimmed, with a trailing '/', or null for the repo root."""
    trimmed = path.strip().strip("/")
    if not trimmed:
        return None
    if trimmed.startswith("/") or ".." in trimmed.split("/"):
        raise PublishError(f"library path {path!r} must be relative and without '..'")
    return trimmed + "/"


@dataclass(frozen=True)
class LibrarySpec:
    """A Global Pipeline Library retrieved with Modern SCM (Git), as the UI would create it."""

    name: str
    remote: str
    default_version: str = "main"
    library_path: str = "jenkins/"
    credentials_id: str = ""
    implicit: bool = False
    # Off by default: with it, any `@Library('archfleet@<branch>')` loads that branch's code as a
    # trusted library, outside the sandbox, so whoever can push a branch runs code as Jenkins.
    allow_version_override: bool = False

    def __post_init__(self) -> None:
        _check_name("library name", self.name)
        check_remote(self.remote)
        if not _VERSION.match(self.default_version):
            raise PublishError(f"default version {self.default_version!r} is not a branch or tag")
        normalise_library_path(self.library_path)

    def fields(self) -> dict[str, Any]:
        """The comparable view: the same keys and spellings the console script reports."""
        return {
            "name": self.name,
            "retriever": "SCMSourceRetriever",
            "scm": "GitSCMSource",
            "remote": self.remote,
            "credentialsId": self.credentials_id or None,
            "traits": ["BranchDiscoveryTrait", "TagDiscoveryTrait"],
            "libraryPath": normalise_library_path(self.library_path),
            "defaultVersion": self.default_version,
            "implicit": self.implicit,
            "allowVersionOverride": self.allow_version_override,
        }


@dataclass(frozen=True)
class JobSpec:
    """The example Pipeline job: 'Pipeline script from SCM' running a Jenkinsfile that calls
    multiArchBuild (default: the library repository's own jenkins/Jenkinsfile.example)."""

    name: str
    remote: str
    branch: str = "main"
    script_path: str = "jenkins/Jenkinsfile.example"
    credentials_id: str = ""
    library: str = "archfleet"

    def __post_init__(self) -> None:
        _check_name("job name", self.name)
        check_remote(self.remote)
        if not _VERSION.match(self.branch):
            raise PublishError(f"branch {self.branch!r} is not a branch name")
        if not self.script_path or self.script_path.startswith("/"):
            raise PublishError(f"script path {self.script_path!r} must be relative to the repo")

    @property
    def description(self) -> str:
        return (
            f"Example: a multi-arch image with the '{self.library}' shared library "
            f"(multiArchBuild). {MANAGED_MARK}; changes here are overwritten."
        )

    def fields(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "definition": "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition",
            "scm": "hudson.plugins.git.GitSCM",
            "remote": self.remote,
            "credentialsId": self.credentials_id or None,
            "branches": [f"*/{self.branch}"],
            "scriptPath": self.script_path,
            "lightweight": True,
        }

    def config_xml(self) -> str:
        root = ET.Element("flow-definition", {"plugin": "workflow-job"})
        ET.SubElement(root, "description").text = self.description
        ET.SubElement(root, "keepDependencies").text = "false"
        ET.SubElement(root, "properties")
        definition = ET.SubElement(
            root,
            "definition",
            {"class": "org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition"},
        )
        scm = ET.SubElement(definition, "scm", {"class": "hudson.plugins.git.GitSCM"})
        ET.SubElement(scm, "configVersion").text = "2"
        remotes = ET.SubElement(scm, "userRemoteConfigs")
        remote = ET.SubElement(remotes, "hudson.plugins.git.UserRemoteConfig")
        ET.SubElement(remote, "url").text = self.remote
        if self.credentials_id:
            ET.SubElement(remote, "credentialsId").text = self.credentials_id
        branches = ET.SubElement(scm, "branches")
        spec = ET.SubElement(branches, "hudson.plugins.git.BranchSpec")
        ET.SubElement(spec, "name").text = f"*/{self.branch}"
        ET.SubElement(scm, "doGenerateSubmoduleConfigurations").text = "false"
        ET.SubElement(scm, "submoduleCfg", {"class": "empty-list"})
        ET.SubElement(scm, "extensions")
        ET.SubElement(definition, "scriptPath").text = self.script_path
        ET.SubElement(definition, "lightweight").text = "true"
        ET.SubElement(root, "triggers")
        ET.SubElement(root, "disabled").text = "false"
        ET.indent(root)
        body = ET.tostring(root, encoding="unicode")
        return f"<?xml version='1.1' encoding='UTF-8'?>\n{body}\n"


def job_fields(config_xml: str) -> dict[str, Any]:
    """The comparable view of a Pipeline job's config.xml (as Jenkins rewrites it on save)."""
    try:
        root = ET.fromstring(config_xml.encode())  # noqa: S314 -- see the import
    except ET.ParseError as exc:
        raise PublishError(f"the job's config.xml is not XML: {exc}") from None
    definition = root.find("definition")
    scm = definition.find("scm") if definition is not None else None

    def text(node: ET.Element | None, path: str) -> str | None:
        found = node.find(path) if node is not None else None
        return (found.text or "").strip() if found is not None else None

    return {
        "description": text(root, "description") or "",
        "definition": definition.get("class") if definition is not None else None,
        "scm": scm.get("class") if scm is not None else None,
        "remote": text(scm, "userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/url"),
        "credentialsId": text(
            scm, "userRemoteConfigs/hudson.plugins.git.UserRemoteConfig/credentialsId"
        )
        or None,
        "branches": [
            (b.text or "").strip()
            for b in (
                scm.findall("branches/hudson.plugins.git.BranchSpec/name")
                if scm is not None
                else []
            )
        ],
        "scriptPath": text(definition, "scriptPath"),
        "lightweight": text(definition, "lightweight") == "true",
    }


# ---------------------------------------------------------------- planning (pure)


@dataclass(frozen=True)
class ObservedJob:
    exists: bool
    fields: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Change:
    kind: Literal["library", "job"]
    name: str
    action: Action
    differences: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "differences": list(self.differences),
        }


def differences(current: Mapping[str, Any], desired: Mapping[str, Any]) -> tuple[str, ...]:
    """`key: 'old' -> 'new'` for every key whose value differs (descriptions abridged)."""
    out = []
    for key, want in desired.items():
        have = current.get(key)
        if have != want:
            if key == "description":
                out.append("description: rewritten")
            else:
                out.append(f"{key}: {have!r} -> {want!r}")
    return tuple(out)


def plan_library(spec: LibrarySpec, observed: Mapping[str, Any] | None) -> Change:
    if observed is None:
        return Change("library", spec.name, "create")
    diff = differences(observed, spec.fields())
    return Change("library", spec.name, "update" if diff else "unchanged", diff)


def plan_job(spec: JobSpec, observed: ObservedJob) -> Change:
    if not observed.exists:
        return Change("job", spec.name, "create")
    current = observed.fields or {}
    if MANAGED_MARK not in str(current.get("description", "")):
        raise PublishError(
            f"job {spec.name!r} exists and was not created by archfleet (its description lacks "
            f"{MANAGED_MARK!r}); choose another name with --job, or delete or rename that job"
        )
    diff = differences(current, spec.fields())
    return Change("job", spec.name, "update" if diff else "unchanged", diff)


@dataclass(frozen=True)
class PublishPlan:
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)


# ---------------------------------------------------------------- script-console scripts


def groovy_string(value: str) -> str:
    """A single-quoted Groovy literal: no interpolation, quotes and backslashes escaped."""
    escaped = (
        value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    )
    return f"'{escaped}'"


_DESCRIBE = """\
import groovy.json.JsonOutput
import org.jenkinsci.plugins.workflow.libs.GlobalLibraries

// Written by archfleet publish-jenkins-library: reads/writes one Global Pipeline Library.
Map describe(Object library) {
    def has = { Object o, String p -> o != null && o.metaClass.hasProperty(o, p) }
    Object retriever = library.retriever
    Object scm = has(retriever, 'scm') ? retriever.scm : null
    return [
        name: library.name,
        retriever: retriever?.getClass()?.simpleName,
        scm: scm?.getClass()?.simpleName,
        remote: has(scm, 'remote') ? scm.remote : null,
        credentialsId: has(scm, 'credentialsId') ? scm.credentialsId : null,
        traits: has(scm, 'traits') ? scm.traits.collect { it.getClass().simpleName } : [],
        libraryPath: has(retriever, 'libraryPath') ? retriever.libraryPath : null,
        defaultVersion: library.defaultVersion,
        implicit: library.implicit,
        allowVersionOverride: library.allowVersionOverride,
    ]
}
"""


def query_library_script(name: str) -> str:
    return (
        _DESCRIBE
        + f"String wanted = {groovy_string(name)}\n"
        + "Object found = GlobalLibraries.get().libraries.find { it.name == wanted }\n"
        + f"println {groovy_string(RESULT_PREFIX)} + "
        + "JsonOutput.toJson([library: found == null ? null : describe(found)])\n"
    )


def apply_library_script(spec: LibrarySpec) -> str:
    desired = json.dumps(spec.fields(), sort_keys=True)
    return (
        _DESCRIBE
        + """\
import groovy.json.JsonSlurperClassic
import jenkins.plugins.git.GitSCMSource
import jenkins.plugins.git.traits.BranchDiscoveryTrait
import jenkins.plugins.git.traits.TagDiscoveryTrait
import org.jenkinsci.plugins.workflow.libs.LibraryConfiguration
import org.jenkinsci.plugins.workflow.libs.SCMSourceRetriever

"""
        + f"Map desired = (Map) new JsonSlurperClassic().parseText({groovy_string(desired)})\n"
        + """\
GlobalLibraries globals = GlobalLibraries.get()
List libraries = new ArrayList(globals.libraries)
int index = libraries.findIndexOf { it.name == desired.name }
Map before = index >= 0 ? describe(libraries[index]) : null
GitSCMSource source = new GitSCMSource((String) desired.remote)
if (desired.credentialsId) {
    source.credentialsId = (String) desired.credentialsId
}
source.traits = [new BranchDiscoveryTrait(), new TagDiscoveryTrait()]
SCMSourceRetriever retriever = new SCMSourceRetriever(source)
if (desired.libraryPath) {
    retriever.libraryPath = (String) desired.libraryPath
}
LibraryConfiguration library = new LibraryConfiguration((String) desired.name, retriever)
library.defaultVersion = (String) desired.defaultVersion
library.implicit = (boolean) desired.implicit
library.allowVersionOverride = (boolean) desired.allowVersionOverride
Map after = describe(library)
String action = before == null ? 'create' : (before == after ? 'unchanged' : 'update')
if (action != 'unchanged') {
    if (index >= 0) {
        libraries[index] = library
    } else {
        libraries << library
    }
    globals.libraries = libraries  // setLibraries() saves the configuration
}
"""
        + f"println {groovy_string(RESULT_PREFIX)} + "
        + "JsonOutput.toJson([action: action, library: after])\n"
    )


def parse_script_output(output: str, what: str) -> dict[str, Any]:
    """The JSON line a console script printed, or a PublishError that says why there is none."""
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                data = json.loads(line[len(RESULT_PREFIX) :])
            except ValueError:
                break
            if isinstance(data, dict):
                return data
    tail = output.strip()[-_OUTPUT_TAIL:]
    if "unable to resolve class" in output:
        raise PublishError(
            f"{what}: Jenkins lacks a plugin the script needs (Pipeline: Groovy Libraries "
            f"'pipeline-groovy-lib' and Git 'git'); script console said: {tail}"
        )
    raise PublishError(f"{what}: the script console did not answer as expected: {tail!r}")


# ---------------------------------------------------------------- Jenkins I/O (jenkinsapi)


def check_jenkins_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublishError(f"--jenkins {url!r} is not an http(s) URL, e.g. https://ci.example.com")
    if parts.username or parts.password:
        raise PublishError(
            "the Jenkins URL contains credentials; set JENKINS_USER and JENKINS_API_TOKEN instead"
        )
    return url.rstrip("/")


def _reason(exc: Exception) -> str:
    """What went wrong, without request bodies (scripts, configs) or headers."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return (
                f"HTTP {status}: Jenkins refused the credentials or permission (JENKINS_USER / "
                "JENKINS_API_TOKEN; the script console needs Overall/Administer)"
            )
        return f"HTTP {status}"
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: cannot reach Jenkins"
    match = re.search(r"status=(\d+)", str(exc))
    if match:
        return f"HTTP {match.group(1)}"
    return type(exc).__name__


class JenkinsServer:
    """The few Jenkins calls publishing needs, through jenkinsapi."""

    def __init__(
        self, url: str, username: str, token: str, *, timeout: int = 30, verify: bool = True
    ) -> None:
        self.url = check_jenkins_url(url)
        try:
            self._jenkins: Any = Jenkins(
                self.url, username=username, password=token, timeout=timeout, ssl_verify=verify
            )
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise PublishError(f"connecting to {self.url}: {_reason(exc)}") from None

    def run_script(self, script: str, what: str) -> dict[str, Any]:
        try:
            output: str = self._jenkins.run_groovy_script(script)
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise PublishError(f"{what} (script console): {_reason(exc)}") from None
        return parse_script_output(output, what)

    def library(self, name: str) -> dict[str, Any] | None:
        data = self.run_script(query_library_script(name), f"reading library {name!r}")
        found = data.get("library")
        return found if isinstance(found, dict) else None

    def apply_library(self, spec: LibrarySpec) -> dict[str, Any]:
        return self.run_script(apply_library_script(spec), f"writing library {spec.name!r}")

    def job(self, name: str) -> ObservedJob:
        try:
            if not self._jenkins.has_job(name):
                return ObservedJob(exists=False)
            config: str = self._jenkins.get_job(name).get_config()
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise PublishError(f"reading job {name!r}: {_reason(exc)}") from None
        return ObservedJob(exists=True, fields=job_fields(config))

    def create_job(self, name: str, config_xml: str) -> None:
        try:
            self._jenkins.create_job(name, config_xml)
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise PublishError(f"creating job {name!r}: {_reason(exc)}") from None

    def update_job(self, name: str, config_xml: str) -> None:
        # Job.update_config() does not check the answer; post and confirm the status instead.
        try:
            job = self._jenkins.get_job(name)
            self._jenkins.requester.post_and_confirm_status(
                f"{job.baseurl}/config.xml",
                data=config_xml.encode(),
                headers={"Content-Type": "application/xml"},
            )
        except (requests.RequestException, JenkinsAPIException) as exc:
            raise PublishError(f"updating job {name!r}: {_reason(exc)}") from None


# ---------------------------------------------------------------- the whole publish


@dataclass(frozen=True)
class PublishResult:
    jenkins: str
    plan: PublishPlan
    dry_run: bool
    library: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "jenkins": self.jenkins,
            "dryRun": self.dry_run,
            "changed": self.plan.changed,
            "changes": [c.to_json() for c in self.plan.changes],
            "library": dict(self.library),
        }


def publish(
    server: JenkinsServer, library: LibrarySpec, job: JobSpec | None, *, dry_run: bool = False
) -> PublishResult:
    """Read, plan, and (unless dry_run) apply: library first, then the job that uses it."""
    library_change = plan_library(library, server.library(library.name))
    changes = [library_change]
    if job is not None:
        changes.append(plan_job(job, server.job(job.name)))
    plan = PublishPlan(tuple(changes))
    stored: Mapping[str, Any] = library.fields()
    if dry_run:
        return PublishResult(server.url, plan, dry_run=True, library=stored)
    if library_change.action != "unchanged":
        answer = server.apply_library(library)
        stored = answer.get("library") or {}
        drift = differences(stored, library.fields())
        if drift:
            raise PublishError(
                f"Jenkins stored library {library.name!r} differently: {'; '.join(drift)}"
            )
    if job is not None:
        job_change = changes[1]
        if job_change.action == "create":
            server.create_job(job.name, job.config_xml())
        elif job_change.action == "update":
            server.update_job(job.name, job.config_xml())
    return PublishResult(server.url, plan, dry_run=False, library=stored)
