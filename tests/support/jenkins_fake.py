"""A FAKE Jenkins controller for tests: NOT Jenkins, a loopback HTTP server answering the
endpoints jenkinsapi and publish-jenkins-library call, the way Jenkins documents them.

- Basic auth with a user and API token on every request (401 otherwise).
- CSRF crumbs: `GET /crumbIssuer/api/python`; every POST needs the `Jenkins-Crumb` header (403).
- `GET /api/python` (and /api/json): the job list; `GET /job/<name>/api/python`.
- `POST /createItem?name=<name>` with a config.xml body (400 if the job exists);
  `GET|POST /job/<name>/config.xml`.
- `POST /scriptText` (form field `script`): the script console. The script really runs, on
  Groovy 2.4 (Jenkins' Groovy) in one long-lived JVM per fake (tests/groovy/console_server.groovy),
  against FAKE classes of the plugins it uses
  (tests/groovy/jenkins_stubs: GlobalLibraries, LibraryConfiguration, SCMSourceRetriever,
  GitSCMSource, discovery traits), whose configuration persists in the fake's home directory.
  Like Jenkins, a failing script still answers 200 with the error text.
- Agent nodes (what jenkinsapi's Nodes/Node call): `GET /computer/api/python` (the node list,
  with the built-in node; `offline` and `assignedLabels` as Jenkins gives them whatever `tree`
  asks), `POST /computer/doCreateItem?name=&type=hudson.slaves.DumbSlave$DescriptorImpl&json=`
  (400 for a bad or taken name; the stored config.xml is built from the submitted JSON, a
  JNLP launcher unless an SSH one is given), `GET|POST /computer/<name>/config.xml` (a POST
  replaces the node; its root element must stay the same class),
  `GET /computer/<name>/doDelete` (405: POST required, as on current Jenkins) and `POST`
  (deletes), `GET /computer/<name>/api/python`.
  Nodes start offline; a test sets `online[name]`, or `launch_on_create` to have a node
  online as soon as it is created (as if its SSH launcher had connected at once).
  `fail_once(method, path, status)` makes the next such request fail, to test what a client
  does halfway.

Failure answers of the node endpoints follow Jenkins core (jenkinsci/jenkins):
- `POST /computer/<name>/config.xml` is `Computer.doConfigDotXml` -> `updateByXml`
  (core/src/main/java/hudson/model/Computer.java): Computer/Configure is checked first (403),
  an unknown node is 404 (`ComputerSet.getDynamic` finds no computer), a body whose node class
  differs from the node's is `HttpResponses.errorWithoutStack(SC_BAD_REQUEST, "Node types do
  not match")` — 400, not 500; a body XStream cannot read fails in `XSTREAM2.fromXML`, an
  uncaught exception: 500. The new name goes through `Jenkins.checkGoodName` in
  `Nodes.replaceNode` (core/src/main/java/jenkins/model/Nodes.java): a `Failure`, which
  renders AbstractModelObject/error.jelly with status 400.
- `GET .../config.xml` needs Computer/ExtendedRead (implied by Configure), `doCreateItem` /
  `doDoCreateItem` Computer/Create (ComputerSet.java), `doDoDelete` Computer/Delete. A missing
  permission is `AccessDeniedException3` -> 403 with "<user> is missing the Agent/<Name>
  permission" and the `X-Required-Permission` header (hudson/security/
  AccessDeniedHandlerImpl.java, AccessDeniedException3.java). A test takes permissions away
  with `denied` (e.g. {"Configure"}).

What `archfleet doctor` reads (additions; the rest above is unchanged):
- `X-Jenkins: <version>` on every answer (`fake.version`): core/src/main/java/hudson/model/
  Api.java `setHeaders` on API answers, hudson/Functions.java `advertiseHeaders` on the 403
  an ANONYMOUS request gets from core/src/main/java/hudson/security/
  HudsonAuthenticationEntryPoint.java ("Authentication required"). So a request without any
  Authorization header is that 403 here; a wrong user or token is still the 401 above.
- `GET /pluginManager/api/json?depth=1`: core/src/main/java/hudson/PluginManager.java
  `getApi()` checks Overall/SystemRead (403 "<user> is missing the Overall/SystemRead
  permission" when `denied` holds "SystemRead"); `getPlugins()` lists hudson/PluginWrapper
  objects with `shortName`, `longName`, `version`, `active`, `enabled` (and more). The fake's
  plugins are `fake.plugins` (short name -> (version, active)); the versions are examples.
- `GET /credentials/store/system/domain/_/credential/<id>/api/json`: jenkinsci/credentials-plugin
  CredentialsStoreAction.java, CredentialsWrapper (`id`, `displayName`, `typeName`,
  `description`, `fullName`); 404 for an id the system store's global domain lacks. The fake's
  credentials are `fake.credentials` (id -> typeName, e.g. "SSH Username with private key");
  Credentials/View is needed (403 when `denied` holds "CredentialsView").

Launching (only with `launch_on_create`): the SSH launcher's host key check is modelled from
the ssh-agents plugin (src/main/java/hudson/plugins/sshslaves/verifiers/): a node with
`ManuallyProvidedKeyVerificationStrategy` connects only when its stored key (algorithm and
bytes, HostKey.equals) is the key the host presents (`host_keys[(address, port)]`, "algorithm
base64"); `KnownHostsFileKeyVerificationStrategy` only when the controller's `known_hosts`
holds it; `NonVerifying` always. When `host_keys` is empty the check is not modelled and an SSH
node connects (the behaviour before this model). `launch_log[name]` says why a node did not.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from toolkit.lab.cache import cache_dir

REPO = Path(__file__).resolve().parents[2]
STUBS = REPO / "tests" / "groovy" / "jenkins_stubs"
CONSOLE = REPO / "tests" / "groovy" / "console_server.groovy"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
CRUMB_FIELD = "Jenkins-Crumb"
SSH_KEY_TYPE = "SSH Username with private key"  # ssh-credentials' BasicSSHUserPrivateKey
# Installed plugins of a controller set up as jenkins/README.md asks (versions: examples).
DEFAULT_PLUGINS: dict[str, tuple[str, bool]] = {
    "ssh-slaves": ("3.1031.v72c6b_883b_869", True),
    "ssh-credentials": ("355.v9b_e5b_cde5003", True),
    "credentials": ("1408.va_622a_b_f5b_1b_1", True),
    "credentials-binding": ("687.v619cb_15e923f", True),
    "pipeline-groovy-lib": ("752.vdddedf804e72", True),
    "workflow-aggregator": ("608.v67378e9d3db_1", True),
    "workflow-cps": ("4106.v7a_8a_8176d450", True),
    "workflow-job": ("1520.v56d65e3b_4566", True),
    "workflow-durable-task-step": ("1405.v1fcd4a_d00096", True),
    "pipeline-milestone-step": ("119.vdfdc43fc3b_9a_", True),
    "git": ("5.7.0", True),
    "docker-workflow": ("611.v16e84da_6d3ff", True),
    "lockable-resources": ("1327.ved786b_a_197e0", True),
}


@dataclass
class Request:
    method: str
    path: str
    status: int


@dataclass
class FakeJenkins:
    home: Path
    user: str
    token: str
    # Answer every script as if the plugins were not installed (compile error).
    plugins_missing: bool = False
    jobs: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    crumb: str = field(default_factory=lambda: secrets.token_hex(8))
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _console: subprocess.Popen[bytes] | None = None
    # Start the Groovy script console (a JVM); node-only tests switch it off.
    console: bool = True
    # name -> config.xml as Jenkins stores it; online state per node (absent = offline).
    nodes: dict[str, str] = field(default_factory=dict)
    online: dict[str, bool] = field(default_factory=dict)
    launch_on_create: bool = False
    faults: dict[tuple[str, str], int] = field(default_factory=dict)
    # Computer permissions the user lacks: "Configure", "ExtendedRead", "Create", "Delete".
    denied: set[str] = field(default_factory=set)
    # (address, port) -> "algorithm base64": the key each agent host's sshd presents.
    host_keys: dict[tuple[str, int], str] = field(default_factory=dict)
    # The controller's ~/.ssh/known_hosts, as (address, port) -> "algorithm base64".
    known_hosts: dict[tuple[str, int], str] = field(default_factory=dict)
    launch_log: dict[str, str] = field(default_factory=dict)
    # What doctor reads: the X-Jenkins version, the plugins (short name -> (version,
    # active)), the system store's credentials (id -> typeName).
    version: str = "2.516.3"
    plugins: dict[str, tuple[str, bool]] = field(default_factory=lambda: dict(DEFAULT_PLUGINS))
    credentials: dict[str, str] = field(default_factory=dict)

    def fail_once(self, method: str, path: str, status: int) -> None:
        """The next `method path` request answers `status` (and changes nothing)."""
        self.faults[(method.upper(), path)] = status

    def _take_fault(self, method: str, path: str) -> int | None:
        with self._lock:
            return self.faults.pop((method, path), None)

    def launch(self, name: str) -> bool:
        """Try to connect node `name` the way its launcher would (see the module docstring);
        sets `online[name]` and `launch_log[name]`."""
        online, why = _launch_verdict(self.nodes[name], self.host_keys, self.known_hosts)
        self.online[name] = online
        self.launch_log[name] = why
        return online

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def libraries(self) -> list[dict[str, Any]]:
        path = self.home / "libraries.json"
        return json.loads(path.read_text()) if path.exists() else []

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.status < 400]

    def __enter__(self) -> FakeJenkins:
        self.home.mkdir(parents=True, exist_ok=True)
        if self.console:
            self._console = subprocess.Popen(
                ["groovy", "-cp", str(compiled_stubs()), str(CONSOLE)],
                env={**os.environ, "JAVA_HOME": JAVA_HOME, "FAKE_JENKINS_HOME": str(self.home)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        fake = self

        class Handler(_Handler):
            jenkins = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        console = self._console
        if console is not None:
            assert console.stdin is not None
            console.stdin.close()  # the console ends at end of input
            try:
                console.wait(timeout=10)
            except subprocess.TimeoutExpired:
                console.kill()
                console.wait()

    def run_script(self, script: str) -> str:
        self.scripts.append(script)
        if self.plugins_missing:
            return (
                "org.codehaus.groovy.control.MultipleCompilationErrorsException: startup failed:\n"
                "Script1.groovy: 2: unable to resolve class "
                "org.jenkinsci.plugins.workflow.libs.GlobalLibraries\n"
            )
        with self._lock:
            console = self._console
            if console is None:
                return "java.lang.IllegalStateException: this fake runs without a script console"
            assert console.stdin and console.stdout
            data = script.encode()
            console.stdin.write(f"{len(data)}\n".encode() + data)
            console.stdin.flush()
            length = int(console.stdout.readline().decode().strip() or -1)
            if length < 0:
                raise RuntimeError("the fake script console died")
            return console.stdout.read(length).decode()


def compiled_stubs() -> Path:
    """The fake plugin classes compiled once (cached by content), so each console call only
    compiles the script itself."""
    sources = sorted(STUBS.rglob("*.groovy"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    target = cache_dir() / "fake-jenkins-stubs" / digest
    if not (target / ".done").exists():
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            subprocess.run(
                ["groovyc", "-d", tmp, *map(str, sources)],
                env={**os.environ, "JAVA_HOME": JAVA_HOME},
                capture_output=True,
                check=True,
                timeout=120,
            )
            (Path(tmp) / ".done").touch()
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                Path(tmp).rename(target)
            except OSError:
                if not (target / ".done").exists():
                    raise
            Path(tmp).mkdir(exist_ok=True)  # TemporaryDirectory removes it on exit
    return target


class _Handler(BaseHTTPRequestHandler):
    jenkins: FakeJenkins

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -------------------------------------------------------------- plumbing

    def _record(self, status: int) -> None:
        # Before the answer goes out: the client may send its next request the moment it has
        # the reply, and the record must keep the order the requests were served in.
        with self.jenkins._lock:
            self.jenkins.requests.append(Request(self.command, urlsplit(self.path).path, status))

    def _reply(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
        data = body.encode()
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Jenkins", self.jenkins.version)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="Jenkins"')
        self.end_headers()
        self.wfile.write(data)

    def _permitted(self, permission: str) -> bool:
        """Computer/<permission>, as Jenkins checks it (ExtendedRead is implied by Configure);
        else the 403 AccessDeniedHandlerImpl sends."""
        denied = self.jenkins.denied
        missing = permission in denied and not (
            permission == "ExtendedRead" and "Configure" not in denied
        )
        if not missing:
            return True
        data = f"{self.jenkins.user} is missing the Agent/{permission} permission".encode()
        self._record(403)
        self.send_response(403)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-You-Are-Authenticated-As", self.jenkins.user)
        self.send_header("X-Required-Permission", f"hudson.model.Computer.{permission}")
        self.send_header("X-Jenkins", self.jenkins.version)
        self.end_headers()
        self.wfile.write(data)
        return False

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") is None:
            # HudsonAuthenticationEntryPoint: anonymous -> 403, with advertiseHeaders.
            self._reply(403, "Authentication required", "text/html")
            return False
        expected = base64.b64encode(f"{self.jenkins.user}:{self.jenkins.token}".encode()).decode()
        if self.headers.get("Authorization") != f"Basic {expected}":
            self._reply(401, "Invalid password/token for user")
            return False
        return True

    def _jobs_json(self) -> dict[str, Any]:
        return {
            "_class": "hudson.model.Hudson",
            "jobs": [
                {
                    "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                    "name": name,
                    "url": f"{self.jenkins.url}/job/{name}/",
                    "color": "notbuilt",
                }
                for name in sorted(self.jenkins.jobs)
            ],
        }

    def _job_name(self, path: str) -> tuple[str, str]:
        """'/job/NAME/rest' -> (NAME, 'rest')."""
        _, _, rest = path.partition("/job/")
        name, _, tail = rest.partition("/")
        return unquote(name), tail

    # -------------------------------------------------------------- verbs

    def do_GET(self) -> None:
        if not self._authorised():
            return
        path = urlsplit(self.path).path.rstrip("/")
        fault = self.jenkins._take_fault("GET", path)
        if fault is not None:
            self._reply(fault, "injected fault (fake Jenkins)")
        elif path == "/crumbIssuer/api/python":
            self._reply(200, repr({"crumb": self.jenkins.crumb, "crumbRequestField": CRUMB_FIELD}))
        elif path in ("/api/python", "/api/json"):
            self._reply(200, json.dumps(self._jobs_json()), "application/json")
        elif path == "/pluginManager/api/json":
            self._plugins_get()
        elif path.startswith("/credentials/store/system/domain/_/credential/"):
            self._credential_get(path)
        elif path == "/computer" or path.startswith("/computer/"):
            self._computer_get(path)
        elif path.startswith("/job/"):
            name, tail = self._job_name(path)
            if name not in self.jenkins.jobs:
                self._reply(404, "Not Found")
            elif tail == "config.xml":
                self._reply(200, self.jenkins.jobs[name], "application/xml")
            elif tail in ("api/python", "api/json"):
                info: dict[str, Any] = {
                    "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
                    "name": name,
                    "url": f"{self.jenkins.url}/job/{name}/",
                    "builds": [],
                    "color": "notbuilt",
                    "firstBuild": None,
                    "lastBuild": None,
                }
                self._reply(200, json.dumps(info), "application/json")
            else:
                self._reply(404, "Not Found")
        else:
            self._reply(404, "Not Found")

    def do_POST(self) -> None:
        if not self._authorised():
            return
        body = self._body()
        if self.headers.get(CRUMB_FIELD) != self.jenkins.crumb:
            self._reply(403, "No valid crumb was included in the request")
            return
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        fault = self.jenkins._take_fault("POST", path)
        if fault is not None:
            self._reply(fault, "injected fault (fake Jenkins)")
        elif path == "/computer/doCreateItem":
            self._create_node(parse_qs(parts.query))
        elif path.startswith("/computer/"):
            self._computer_post(path, body)
        elif path == "/scriptText":
            script = parse_qs(body.decode()).get("script", [""])[0]
            self._reply(200, self.jenkins.run_script(script))
        elif path == "/createItem":
            name = parse_qs(parts.query).get("name", [""])[0]
            if not name or name in self.jenkins.jobs:
                self._reply(400, f"A job already exists with the name '{name}'")
            elif not _is_xml(body):
                self._reply(500, "Failed to parse the config.xml")
            else:
                self.jenkins.jobs[name] = body.decode()
                self._reply(200)
        elif path.startswith("/job/"):
            name, tail = self._job_name(path)
            if name not in self.jenkins.jobs or tail != "config.xml":
                self._reply(404, "Not Found")
            elif not _is_xml(body):
                self._reply(500, "Failed to parse the config.xml")
            else:
                self.jenkins.jobs[name] = body.decode()
                self._reply(200)
        else:
            self._reply(404, "Not Found")

    # -------------------------------------------------------------- agent nodes

    def _overall_permitted(self, permission: str, label: str = "") -> bool:
        """A permission outside Computer's (PluginManager.getApi: Overall/SystemRead;
        credentials: Credentials/View), or the 403 AccessDeniedHandlerImpl sends."""
        if permission not in self.jenkins.denied:
            return True
        label = label or f"Overall/{permission}"
        data = f"{self.jenkins.user} is missing the {label} permission".encode()
        self._record(403)
        self.send_response(403)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Jenkins", self.jenkins.version)
        self.send_header("X-Required-Permission", f"hudson.model.Hudson.{permission}")
        self.end_headers()
        self.wfile.write(data)
        return False

    def _plugins_get(self) -> None:
        if not self._overall_permitted("SystemRead"):
            return
        plugins = [
            {
                "active": active,
                "bundled": False,
                "deleted": False,
                "dependencies": [],
                "enabled": active,
                "hasUpdate": False,
                "longName": name,
                "pinned": False,
                "shortName": name,
                "url": f"https://plugins.jenkins.io/{name}",
                "version": version,
            }
            for name, (version, active) in sorted(self.jenkins.plugins.items())
        ]
        body = {"_class": "hudson.LocalPluginManager", "plugins": plugins}
        self._reply(200, json.dumps(body), "application/json")

    def _credential_get(self, path: str) -> None:
        rest = path.removeprefix("/credentials/store/system/domain/_/credential/")
        credential_id, _, tail = rest.partition("/")
        credential_id = unquote(credential_id)
        if "CredentialsView" in self.jenkins.denied:
            self._overall_permitted("CredentialsView", "Credentials/View")
            return
        kind = self.jenkins.credentials.get(credential_id)
        if kind is None or tail != "api/json":
            self._reply(404, "Not Found")
            return
        body = {
            "_class": "com.cloudbees.plugins.credentials.CredentialsStoreAction$CredentialsWrapper",
            "description": "",
            "displayName": f"{credential_id} (archfleet agents)",
            "fingerprint": None,
            "fullName": f"system/_/{credential_id}",
            "id": credential_id,
            "typeName": kind,
        }
        self._reply(200, json.dumps(body), "application/json")

    def _redirect(self, location: str) -> None:
        self._record(302)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("X-Jenkins", self.jenkins.version)
        self.end_headers()

    def _computer(self, name: str) -> dict[str, Any]:
        fake = self.jenkins
        if name == BUILT_IN:
            labels, executors, offline = ["built-in"], 2, False
        else:
            node = _node_fields(fake.nodes[name])
            labels = [*node["label"].split(), name]
            executors = int(node["numExecutors"] or 1)
            offline = not fake.online.get(name, False)
        return {
            "_class": "hudson.model.Hudson$MasterComputer"
            if name == BUILT_IN
            else "hudson.slaves.SlaveComputer",
            "displayName": name,
            "assignedLabels": [{"name": label} for label in labels],
            "numExecutors": executors,
            "offline": offline,
            "temporarilyOffline": False,
            "idle": True,
            "jnlpAgent": False,
            "launchSupported": True,
            "manualLaunchAllowed": True,
            "offlineCauseReason": "" if not offline else "This agent is offline",
            "monitorData": {},
        }

    def _computer_get(self, path: str) -> None:
        fake = self.jenkins
        if path == "/computer":
            self._reply(200, "<html><body>Nodes</body></html>", "text/html")
            return
        if path in ("/computer/api/python", "/computer/api/json"):
            names = [BUILT_IN, *sorted(fake.nodes)]
            data = {
                "_class": "hudson.model.ComputerSet",
                "busyExecutors": 0,
                "computer": [self._computer(n) for n in names],
                "displayName": "Nodes",
            }
            self._reply(200, json.dumps(data), "application/json")
            return
        name, tail = _node_path(path)
        if name not in fake.nodes:
            self._reply(404, "Not Found")
        elif tail == "config.xml":
            if self._permitted("ExtendedRead"):
                self._reply(200, fake.nodes[name], "application/xml")
        elif tail in ("api/python", "api/json"):
            self._reply(200, json.dumps(self._computer(name)), "application/json")
        elif tail == "doDelete":
            self._reply(405, "This URL requires POST")
        else:
            self._reply(404, "Not Found")

    def _create_node(self, query: dict[str, list[str]]) -> None:
        fake = self.jenkins
        name = query.get("name", [""])[0].strip()
        kind = query.get("type", [""])[0]
        if not self._permitted("Create"):
            return
        if not name or any(c in _UNSAFE_NAME_CHARS for c in name):
            self._reply(400, f"{name!r} is an unsafe character or empty name")
        elif name in fake.nodes or name == BUILT_IN:
            self._reply(400, f"Agent called '{name}' already exists")
        elif kind != "hudson.slaves.DumbSlave$DescriptorImpl":
            self._reply(400, f"unknown node type {kind!r}")
        else:
            try:
                form = json.loads(query.get("json", ["{}"])[0])
            except ValueError:
                self._reply(400, "malformed json form")
                return
            with fake._lock:
                fake.nodes[name] = _config_from_form(name, form)
                if fake.launch_on_create:
                    fake.launch(name)
            self._redirect("/computer/")

    def _computer_post(self, path: str, body: bytes) -> None:
        fake = self.jenkins
        name, tail = _node_path(path)
        if name not in fake.nodes:
            self._reply(404, "Not Found")
        elif tail == "doDelete":
            if not self._permitted("Delete"):
                return
            with fake._lock:
                fake.nodes.pop(name, None)
                fake.online.pop(name, None)
            self._redirect("/computer/")
        elif tail == "config.xml":
            self._update_by_xml(name, body)
        else:
            self._reply(404, "Not Found")

    def _update_by_xml(self, name: str, body: bytes) -> None:
        """Computer.updateByXml: permission, parse, same node class, checkGoodName, replace."""
        fake = self.jenkins
        if not self._permitted("Configure"):
            return
        if not _is_xml(body):
            self._reply(500, "com.thoughtworks.xstream.io.StreamException: failed to parse")
            return
        new_root = ET.fromstring(body).tag  # noqa: S314 -- the tests' own payloads
        old_root = ET.fromstring(fake.nodes[name].encode()).tag  # noqa: S314
        if _NODE_ROOTS.get(new_root) != _NODE_ROOTS.get(old_root):
            self._reply(400, "Node types do not match")
            return
        new_name = _node_fields(body.decode())["name"] or name
        if any(c in _UNSAFE_NAME_CHARS for c in new_name) or new_name in (".", ".."):
            self._reply(400, f"{new_name!r} is an unsafe name")
            return
        with fake._lock:
            del fake.nodes[name]
            fake.nodes[new_name] = body.decode()
            if fake.launch_on_create:
                fake.launch(new_name)
        self._reply(200)


BUILT_IN = "Built-In Node"
_UNSAFE_NAME_CHARS = set("?*/\\%!@#$^&|<>[]:;")
# XStream aliases Jenkins reads for a permanent agent.
_NODE_ROOTS = {
    "slave": "hudson.slaves.DumbSlave",
    "hudson.slaves.DumbSlave": "hudson.slaves.DumbSlave",
}


def _node_path(path: str) -> tuple[str, str]:
    """'/computer/NAME/rest' -> (NAME, 'rest')."""
    rest = path[len("/computer/") :]
    name, _, tail = rest.partition("/")
    return unquote(name), tail


def _node_fields(config_xml: str) -> dict[str, str]:
    root = ET.fromstring(config_xml.encode())  # noqa: S314 -- the tests' own payloads
    return {tag: (root.findtext(tag) or "") for tag in ("name", "label", "numExecutors")}


def _config_from_form(name: str, form: dict[str, Any]) -> str:
    """config.xml as Jenkins stores a DumbSlave made from the "New node" form's JSON."""
    root = ET.Element("slave")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "description").text = str(form.get("nodeDescription", ""))
    ET.SubElement(root, "remoteFS").text = str(form.get("remoteFS", ""))
    ET.SubElement(root, "numExecutors").text = str(form.get("numExecutors", 1))
    ET.SubElement(root, "mode").text = str(form.get("mode", "NORMAL"))
    retention = form.get("retentionStrategy") or {}
    ET.SubElement(
        root,
        "retentionStrategy",
        {"class": str(retention.get("stapler-class", "hudson.slaves.RetentionStrategy$Always"))},
    )
    launcher_form = form.get("launcher") or {}
    launcher_class = str(launcher_form.get("stapler-class", "hudson.slaves.JNLPLauncher"))
    launcher = ET.SubElement(root, "launcher", {"class": launcher_class})
    if launcher_class == "hudson.plugins.sshslaves.SSHLauncher":
        for key in ("host", "port", "credentialsId"):
            ET.SubElement(launcher, key).text = str(launcher_form.get(key, ""))
    else:
        ET.SubElement(launcher, "workDirSettings")
        ET.SubElement(launcher, "webSocket").text = "false"
    ET.SubElement(root, "label").text = str(form.get("labelString") or "")
    ET.SubElement(root, "nodeProperties")
    ET.indent(root)
    return f"<?xml version='1.1' encoding='UTF-8'?>\n{ET.tostring(root, encoding='unicode')}\n"


def _is_xml(body: bytes) -> bool:
    try:
        ET.fromstring(body)  # noqa: S314 -- the tests' own payloads
    except ET.ParseError:
        return False
    return True


_VERIFIERS = "hudson.plugins.sshslaves.verifiers."


def stored_host_key(config_xml: str) -> str | None:
    """The key a ManuallyProvidedKeyVerificationStrategy holds, read the way XStream fills
    HostKey's fields (`algorithm`, and `key` through the MIME base64 decoder, which skips
    whitespace), as "algorithm base64"; None for another strategy."""
    root = ET.fromstring(config_xml.encode())  # noqa: S314 -- the tests' own payloads
    strategy = root.find("launcher/sshHostKeyVerificationStrategy")
    manual = _VERIFIERS + "ManuallyProvidedKeyVerificationStrategy"
    if strategy is None or strategy.get("class") != manual:
        return None
    algorithm = (strategy.findtext("key/algorithm") or "").strip()
    blob = base64.b64decode("".join((strategy.findtext("key/key") or "").split()))
    return f"{algorithm} {base64.b64encode(blob).decode()}"


def _launch_verdict(
    config_xml: str,
    host_keys: dict[tuple[str, int], str],
    known_hosts: dict[tuple[str, int], str],
) -> tuple[bool, str]:
    root = ET.fromstring(config_xml.encode())  # noqa: S314 -- the tests' own payloads
    launcher = root.find("launcher")
    if launcher is None or launcher.get("class") != "hudson.plugins.sshslaves.SSHLauncher":
        return True, "not an SSH launcher: connected (not modelled)"
    if not host_keys:
        return True, "host keys not modelled: connected"
    address = (launcher.findtext("host") or "", int(launcher.findtext("port") or 22))
    presented = host_keys.get(address)
    if presented is None:
        return False, f"cannot reach {address[0]}:{address[1]}"
    strategy = launcher.find("sshHostKeyVerificationStrategy")
    kind = (strategy.get("class") or "") if strategy is not None else ""
    if kind == _VERIFIERS + "ManuallyProvidedKeyVerificationStrategy":
        if stored_host_key(config_xml) == presented:
            return True, "Key is trusted"  # ManualKeyProvidedHostKeyVerifier_KeyTrusted
        return False, "Key is not trusted: it differs from the key provided"
    if kind == _VERIFIERS + "KnownHostsFileKeyVerificationStrategy":
        entry = known_hosts.get(address)
        if entry == presented:
            return True, "Key is trusted (known_hosts)"
        if entry is None:
            return False, f"No entry currently exists in the Known Hosts file for {address[0]}"
        return False, "the key in known_hosts differs from the host's key"
    if kind == _VERIFIERS + "NonVerifyingKeyVerificationStrategy" or not kind:
        return True, "host key not verified"
    return False, f"{kind}: not modelled, not connected"
