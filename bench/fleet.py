"""Benchmark: a no-op `archfleet provision-runners` re-run against ansible-core doing the same
checks, and against a bare Fabric `ThreadingGroup.run` (the floor), on 1 and 8 lab hosts.

Run as `python bench/fleet.py [--hosts 1,8] [--runs 5] [--json]`.

A benchmark, not a test: it prints figures, ratios and the goals beside them, and exits 0
whatever the times are (non-zero only when something could not run at all, or a tool did not
do the work it is timed for).

Every tool runs as a whole process (start-up included, as a CI job pays it), timed with
time.perf_counter around subprocess.run, against the same amd64 lab hosts (real sshd in a
Debian root each, on 127.0.0.101-108). The fleet is provisioned once, for real, with both
roles, against the local HTTP fakes of GitLab and Jenkins (no servers exist here) and a
gitlab-runner stand-in; then the timed re-runs must report "no change" for every host and
write nothing to either fake.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python bench/fleet.py` puts bench/ on sys.path, not the repository root.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.e2e import runner_downloads  # noqa: E402
from tests.support.gitlab_fake import GitLabFake  # noqa: E402
from tests.support.jenkins_fake import FakeJenkins  # noqa: E402
from tests.support.runner_standin import STANDIN_SCRIPT, STANDIN_VERSION  # noqa: E402
from toolkit.fleet.facts import facts_script  # noqa: E402
from toolkit.fleet.gitlab_host import CONFIG_FILE, RUNNER_BINARY  # noqa: E402
from toolkit.lab.cache import cache_dir  # noqa: E402
from toolkit.lab.hosts import (  # noqa: E402
    LabHost,
    LabUser,
    lab_keypair,
    start_host,
    write_known_hosts,
)
from toolkit.lab.rootfs import build_rootfs  # noqa: E402

# Only these addresses: tests and other work use the rest of 127.0.0.0/8 at the same time.
ADDRESSES = tuple(f"127.0.0.{i}" for i in range(101, 109))
# python3 for Ansible's modules. The builder (buildah, which needs skopeo beside it; debootstrap
# does not resolve the virtual container-network-stack, so its provider is named) and Java are
# baked into the cached root, so the one-off provisioning does not apt-get them into every host
# on every invocation; provisioning still installs gitlab-runner, creates and registers the
# runner and creates the Jenkins node.
BENCH_USER = "ci"
ROOT_PACKAGES = (
    "python3",
    "buildah",
    "skopeo",
    "containernetworking-plugins",
    "openjdk-17-jre-headless",
)
ANSIBLE_REQUIREMENT = "ansible-core>=2.15"  # ANSIBLE_HOME needs 2.14+
VENV_NAME = "bench-venv"
TARGET_PYTHON = "/usr/bin/python3"
# Longer than one round of every tool, so the warm row's masters live from run to run.
CONTROL_PERSIST = "120s"
_TAIL_LINES = 15

OURS = "ours provision-runners"
OURS_OFF = "ours --no-gitlab --no-jenkins"
ANSIBLE = "ansible-playbook (cold)"
ANSIBLE_WARM = "ansible-playbook (warm)"
FLOOR = "floor: Group.run(uname -m)"
FLOOR_FACTS = "Group.run(facts script)"
TOOLS = (OURS, OURS_OFF, ANSIBLE, ANSIBLE_WARM, FLOOR, FLOOR_FACTS)
TOOL_NOTES = {
    OURS: "the measured no-op re-run: both roles, GitLab and Jenkins sides on (fakes)",
    OURS_OFF: "the same re-run with the server sides off: SSH work only",
    ANSIBLE: "gather_subset min + the same checks; fresh ControlPersist masters per run",
    ANSIBLE_WARM: "the same, reusing the masters of the previous run (no SSH handshakes)",
    FLOOR: "bare fabric ThreadingGroup(...).run('uname -m') in a fresh python",
    FLOOR_FACTS: "the same Group.run with our whole facts script as the one command",
}

# Tools the facts script looks for with `command -v`, each checked by a playbook task below.
PLAYBOOK_TOOLS = frozenset({"docker", "buildah", "umoci", "skopeo", "gitlab-runner", "java"})


class BenchError(RuntimeError):
    """A tool could not run or did not do its job; the figures would mean nothing."""


@dataclass
class Measurement:
    tool: str
    wall: list[float] = field(default_factory=list)
    # Requests the run made to the GitLab and Jenkins fakes (ours only).
    requests: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "tool": self.tool,
            "wallSeconds": [round(s, 4) for s in self.wall],
            "wallMin": round(min(self.wall), 4),
            "wallMedian": round(self.median, 4),
            "wallMax": round(max(self.wall), 4),
        }
        if self.requests:
            data["serverRequestsMedian"] = statistics.median(self.requests)
        return data


@dataclass(frozen=True)
class Lab:
    hosts: list[LabHost]
    key: Path
    known_hosts: Path


@dataclass
class Servers:
    gitlab: GitLabFake
    jenkins: FakeJenkins
    runner_url: str
    # Handed to our process through its environment only; never printed.
    env: dict[str, str]
    secrets: tuple[str, ...]

    # The provisioned runner services poll the GitLab fake on their own: not ours to count.
    def requests(self) -> int:
        return len(self.gitlab.client_requests()) + len(self.jenkins.requests)

    def writes(self) -> int:
        return len(self.gitlab.client_writes()) + len(self.jenkins.writes())


# --- running processes -----------------------------------------------------------------------


def redact(text: str, hidden: Sequence[str]) -> str:
    for value in hidden:
        text = text.replace(value, "[hidden]")
    return text


def run(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    hidden: Sequence[str] = (),
    timeout: float = 600,
) -> tuple[float, str, str]:
    """Run one whole process; its wall time, stdout and stderr. A failure stops the benchmark."""
    # Enough of the command line to recognise it (the floor's script is one long argument).
    shown = " ".join(a if len(a) <= 60 else f"{a[:57]}..." for a in args[:5])
    start = time.perf_counter()
    try:
        done = subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"`{shown}` did not finish within {timeout:.0f} s") from None
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        output = (done.stdout + "\n" + done.stderr).strip().splitlines()
        tail = redact("\n".join(output[-_TAIL_LINES:]), hidden)
        raise BenchError(f"`{shown}` failed with status {done.returncode}:\n{tail}")
    return elapsed, done.stdout, done.stderr


# --- Ansible, in a venv of its own -----------------------------------------------------------


def ansible_playbook() -> Path:
    """`ansible-playbook` from a venv under the cache dir, created on first use: ansible-core
    is a peer to measure against, never a dependency of the project."""
    venv = cache_dir() / VENV_NAME
    binary = venv / "bin" / "ansible-playbook"
    if binary.is_file():
        return binary
    print(f"installing {ANSIBLE_REQUIREMENT} into {venv} ...", file=sys.stderr)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", ANSIBLE_REQUIREMENT])
    if not binary.is_file():
        raise BenchError(f"pip installed {ANSIBLE_REQUIREMENT} but {binary} is missing")
    return binary


# Placeholders rather than an f-string: the shell and Jinja below are full of braces.
PLAYBOOK_TEMPLATE = r"""
# The checks of toolkit/fleet/facts.py FACTS_SCRIPT, one task each, as an Ansible user
# would write them; nothing is changed on the hosts (changed_when: false).
- name: archfleet facts, the Ansible way
  hosts: lab
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: machine
      ansible.builtin.command: uname -m
      register: machine
      changed_when: false
    - name: os-release
      ansible.builtin.slurp:
        src: /etc/os-release
      register: os_release
    - name: binfmt emulators
      ansible.builtin.find:
        paths: /proc/sys/fs/binfmt_misc
        patterns: "qemu-*"
        contains: "^enabled"
      register: binfmt
    - name: docker
      ansible.builtin.command:
        argv: [docker, version, --format, "{% raw %}{{.Client.Version}}{% endraw %}"]
      register: docker
      changed_when: false
      failed_when: false
    - name: buildx
      ansible.builtin.command: docker buildx version
      when: docker.rc == 0
      changed_when: false
      failed_when: false
    - name: buildah
      ansible.builtin.command: buildah --version
      register: buildah
      changed_when: false
      failed_when: false
    - name: umoci
      ansible.builtin.command: umoci --version
      register: umoci
      changed_when: false
      failed_when: false
    - name: skopeo
      ansible.builtin.command: skopeo --version
      register: skopeo
      changed_when: false
      failed_when: false
    - name: gitlab-runner
      ansible.builtin.command: @RUNNER_BINARY@ --version
      register: gitlab_runner
      changed_when: false
      failed_when: false
    - name: runner config
      ansible.builtin.stat:
        path: @CONFIG_FILE@
      register: runner_config
    - name: registered runners (id, name, token hash; no token leaves the host)
      ansible.builtin.shell: |
        sed -n 's/^[[:space:]]*\(id\|name\|token\) = "\{0,1\}\([^"]*\)"\{0,1\}$/\1 \2/p' \
          @CONFIG_FILE@ | while read -r key value; do
          [ "$key" = token ] && value=$(printf %s "$value" | sha256sum | cut -c1-16)
          echo "$key=$value"
        done
      register: runners
      when: runner_config.stat.exists
      changed_when: false
    - name: java (the runtime's release file, as the facts script reads it; else java -version)
      ansible.builtin.shell: |
        java=$(command -v java) || exit 1
        home=$(readlink -f "$java") && home=${home%/bin/java}
        sed -n 's/^JAVA_VERSION="\([^"]*\)"$/\1/p' "$home/release" 2>/dev/null | grep . ||
          java -version
      register: java
      changed_when: false
      failed_when: false
    - name: free disk
      ansible.builtin.command: df -Pk /
      register: disk
      changed_when: false
    - name: groups
      ansible.builtin.command: id -Gn
      register: groups
      changed_when: false
    # What the plan decides on: the state our facts found, or the run would be void.
    - name: the host is provisioned
      ansible.builtin.assert:
        quiet: true
        that:
          - machine.stdout == 'x86_64'
          - buildah.rc == 0 and skopeo.rc == 0
          - gitlab_runner.rc == 0
          - runner_config.stat.mode == '0600'
          - "('name=' ~ inventory_hostname) in runners.stdout"
          - java.rc == 0
"""
PLAYBOOK = (
    PLAYBOOK_TEMPLATE.lstrip()
    .replace("@RUNNER_BINARY@", RUNNER_BINARY)
    .replace("@CONFIG_FILE@", CONFIG_FILE)
)


# The facts command provision runs on these hosts (runners and agents, no merge-tool role).
FACTS_SCRIPT = facts_script(python=False)


def playbook_drift() -> list[str]:
    """Tools the facts script checks that the playbook does not (the script may grow)."""
    checked = set(re.findall(r"command -v ([\w-]+)", FACTS_SCRIPT))
    return sorted(checked - PLAYBOOK_TOOLS)


@dataclass(frozen=True)
class AnsibleFiles:
    directory: Path
    playbook: Path
    config: Path

    def inventory(self, n: int) -> Path:
        return self.directory / f"hosts-{n}.ini"


def write_ansible_files(directory: Path, lab: Lab, counts: Sequence[int]) -> AnsibleFiles:
    directory.mkdir(parents=True, exist_ok=True)
    for n in counts:
        lines = ["[lab]"]
        for host in lab.hosts[:n]:
            lines.append(f"{host.name} ansible_host={host.address} ansible_port={host.port}")
        lines += [
            "[lab:vars]",
            f"ansible_user={BENCH_USER}",
            "ansible_become=true",
            "ansible_become_method=sudo",
            f"ansible_ssh_private_key_file={lab.key}",
            # Named, as a tuned setup does: interpreter discovery would cost a round trip.
            f"ansible_python_interpreter={TARGET_PYTHON}",
        ]
        (directory / f"hosts-{n}.ini").write_text("\n".join(lines) + "\n")
    playbook = directory / "facts.yml"
    playbook.write_text(PLAYBOOK)
    config = directory / "ansible.cfg"
    # Ansible at its best: pipelining, ControlPersist, forks >= hosts, no compression on
    # loopback (-C is in its default ssh_args); host keys checked against the lab's file.
    config.write_text(f"""\
[defaults]
forks = {len(ADDRESSES)}
host_key_checking = True
retry_files_enabled = False
local_tmp = {directory}/local-tmp
nocows = 1

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist={CONTROL_PERSIST} \
-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes \
-o IdentitiesOnly=yes -o BatchMode=yes
""")
    return AnsibleFiles(directory, playbook, config)


def ansible_env(files: AnsibleFiles, control_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(files.config),
        # Keeps ~/.ansible of whoever runs the benchmark untouched.
        "ANSIBLE_HOME": str(files.directory / "home"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        # ansible-core refuses to start under a non-UTF-8 locale.
        "LC_ALL": "C.UTF-8",
    }


_RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)


def check_ansible_recap(stdout: str, n: int) -> None:
    hosts = _RECAP.findall(stdout)
    good = [h for h in hosts if int(h[1]) > 0 and h[2] == h[3] == h[4] == "0"]
    if len(good) != n:
        raise BenchError(f"ansible-playbook: expected {n} hosts ok, unchanged; recap: {hosts}")


def close_masters(control_dir: Path) -> int:
    """Stop the ControlPersist masters whose sockets are in `control_dir`; how many there were."""
    sockets = [p for p in control_dir.iterdir() if p.is_socket()] if control_dir.is_dir() else []
    for path in sockets:
        subprocess.run(
            ["ssh", "-o", f"ControlPath={path}", "-O", "exit", "lab"],
            capture_output=True,
            check=False,
            timeout=30,
        )
    return len(sockets)


# --- the floor: bare Fabric ------------------------------------------------------------------

# Run with `python -c`, so it pays an interpreter and Fabric's import like the other tools.
# Known hosts are loaded and unknown keys refused, as ours does: a floor of the same safety.
FLOOR_SCRIPT = """\
import json, sys
import paramiko
from fabric import ThreadingGroup
spec = json.loads(sys.argv[1])
group = ThreadingGroup(*spec["hosts"], user="root", connect_kwargs={
    "key_filename": spec["key"], "look_for_keys": False, "allow_agent": False})
for connection in group:
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    connection.client.load_host_keys(spec["known_hosts"])
results = group.run(spec["command"], hide=True)
print(sum(r.ok for r in results.values()))
group.close()
"""


def floor_command(lab: Lab, n: int, command: str) -> list[str]:
    spec = {
        "hosts": [f"{h.address}:{h.port}" for h in lab.hosts[:n]],
        "key": str(lab.key),
        "known_hosts": str(lab.known_hosts),
        "command": command,
    }
    return [sys.executable, "-c", FLOOR_SCRIPT, json.dumps(spec)]


# --- ours ------------------------------------------------------------------------------------


def write_inventory(path: Path, lab: Lab, servers: Servers, n: int) -> Path:
    """Both roles on every host, as test_provision.py's converge test writes it."""
    standin = hashlib.sha256(STANDIN_SCRIPT.encode()).hexdigest()
    base = servers.runner_url
    hosts = "".join(
        f"  - {{name: {h.name}, address: {h.address}, arch: amd64,\n"
        f"      ssh: {{port: {h.port}}}, roles: [gitlab-runner, jenkins-agent]}}\n"
        for h in lab.hosts[:n]
    )
    path.write_text(f"""\
ssh: {{user: {BENCH_USER}, become: sudo, key: {lab.key}, known_hosts: {lab.known_hosts},
       use_ssh_config: false}}
builder: {{tool: buildah, install: true}}
gitlab:
  url: {servers.gitlab.url}
  allow_http: true
  token_env: BENCH_GITLAB_TOKEN
  group: {servers.gitlab.group}
  tags: [native]
  runner_version: "{STANDIN_VERSION}"
  runner_url: "{base}/v{{version}}/binaries/gitlab-runner-linux-{{arch}}"
  runner_sha256: {{amd64: {standin}}}
jenkins:
  url: {servers.jenkins.url}
  allow_http: true
  java_version: 17  # the bench's hosts are Debian 12 roots: Java 17 is what they have
  user_env: BENCH_JENKINS_USER
  token_env: BENCH_JENKINS_TOKEN
  credentials_id: lab-ssh
hosts:
{hosts}""")
    return path


def ours_command(inventory: Path, *flags: str) -> list[str]:
    # The installed `archfleet` is the same Program; on this machine it sits behind a pyenv
    # shim (a bash script) whose own start-up is not ours to measure.
    return [
        sys.executable,
        "-m",
        "toolkit",
        "provision-runners",
        "--inventory",
        str(inventory),
        *flags,
    ]


def provision_once(inventory: Path, servers: Servers, n: int) -> None:
    """Provision the fleet for real, then check that a re-run plans nothing on any host."""
    env = {**os.environ, **servers.env}
    _, out, _ = run(ours_command(inventory, "--json"), env=env, hidden=servers.secrets)
    hosts = json.loads(out)["hosts"]
    if len(hosts) != n or not all(h.get("applied") for h in hosts):
        raise BenchError(
            f"provisioning applied nothing on some host: {redact(out, servers.secrets)}"
        )
    _, out, _ = run(ours_command(inventory, "--json"), env=env, hidden=servers.secrets)
    if not all(h.get("noChange") for h in json.loads(out)["hosts"]):
        raise BenchError(f"the re-run after provisioning still plans changes: {out[-600:]}")


# Seconds between job requests of the provisioned runner services while timing (gitlab-runner's
# config.toml `check_interval`, default 3 s): 8 services polling on the SAME 2 cores as the
# tools would time this machine, not the tools. On real hosts each polls on its own CPU.
QUIET_CHECK_INTERVAL = 60


def quiet_runner_services(lab: Lab) -> None:
    """Set `check_interval` in every host's config.toml; the running service reloads it (the
    stand-in as gitlab-runner does, commands/multi.go: mtime checked every 3 s)."""
    for host in lab.hosts:
        config = host.root / CONFIG_FILE.lstrip("/")
        lines = config.read_text().splitlines()
        lines = [ln for ln in lines if not ln.strip().startswith("check_interval")]
        config.write_text("\n".join([f"check_interval = {QUIET_CHECK_INTERVAL}", *lines]) + "\n")
    time.sleep(4)  # one reload period


def check_no_change(table: str, n: int, writes_before: int, servers: Servers) -> None:
    # The summary table (rich, on stderr); COLUMNS is set wide so that no cell wraps.
    found = table.count("no change")
    if found != n:
        raise BenchError(f"expected 'no change' for {n} hosts, found {found}:\n{table[-800:]}")
    if servers.writes() != writes_before:
        raise BenchError("a no-op re-run wrote to the GitLab or Jenkins fake")


# --- measuring -------------------------------------------------------------------------------


@dataclass
class Bench:
    lab: Lab
    servers: Servers
    ansible: Path
    files: AnsibleFiles
    inventories: dict[int, Path]
    tmp: Path
    _cold_runs: int = 0

    def once(self, tool: str, n: int) -> tuple[float, int]:
        """One run of `tool` on the first n hosts, checked; (wall seconds, server requests)."""
        if tool in (OURS, OURS_OFF):
            return self._ours(n, servers_off=tool == OURS_OFF)
        if tool in (ANSIBLE, ANSIBLE_WARM):
            return self._ansible(n, warm=tool == ANSIBLE_WARM), 0
        command = "uname -m" if tool == FLOOR else f"sh -c {shlex.quote(FACTS_SCRIPT)}"
        seconds, out, _ = run(floor_command(self.lab, n, command))
        if out.strip() != str(n):
            raise BenchError(f"{tool}: {out.strip()!r} hosts answered, expected {n}")
        return seconds, 0

    def _ours(self, n: int, *, servers_off: bool) -> tuple[float, int]:
        flags = ("--no-gitlab", "--no-jenkins") if servers_off else ()
        env = {**os.environ, **self.servers.env, "COLUMNS": "200"}
        requests, writes = self.servers.requests(), self.servers.writes()
        seconds, _, table = run(
            ours_command(self.inventories[n], *flags), env=env, hidden=self.servers.secrets
        )
        check_no_change(table, n, writes, self.servers)
        return seconds, self.servers.requests() - requests

    def _ansible(self, n: int, *, warm: bool) -> float:
        if warm:
            control = self.tmp / "control" / f"warm-{n}"
        else:
            self._cold_runs += 1
            control = self.tmp / "control" / f"cold-{self._cold_runs}"
        command = [str(self.ansible), "-i", str(self.files.inventory(n)), str(self.files.playbook)]
        seconds, out, _ = run(command, env=ansible_env(self.files, control))
        check_ansible_recap(out, n)
        if not warm:
            # One master per host proves ControlPersist was in use; they go now, so that
            # the next cold run opens its connections from nothing, as ours must.
            masters = close_masters(control)
            if masters != n:
                raise BenchError(f"ansible left {masters} ControlPersist masters, expected {n}")
        return seconds


def compile_bytecode() -> bool:
    """Write the .pyc files of our package, as pip does when it installs a wheel; whether they
    were all written. The libraries measured beside us (fabric, paramiko, ansible) load theirs
    from pip's .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE=1 (set on the machines
    here) would otherwise compile every module of ours again in every timed run."""
    return bool(compileall.compile_dir(REPO_ROOT / "toolkit", quiet=1))


def measure(bench: Bench, n: int, runs: int) -> dict[str, Measurement]:
    results = {tool: Measurement(tool) for tool in TOOLS}
    # One untimed round: page cache, the warm row's masters (and .pyc files where Python may
    # write them; ours are compiled beforehand, see compile_bytecode).
    for tool in TOOLS:
        bench.once(tool, n)
    # Round-robin, so drift in the machine's load spreads over every tool alike.
    for _ in range(runs):
        for tool in TOOLS:
            seconds, requests = bench.once(tool, n)
            results[tool].wall.append(seconds)
            if tool == OURS:
                results[tool].requests.append(requests)
    close_masters(bench.tmp / "control" / f"warm-{n}")
    return results


def startup_floor(runs: int) -> dict[str, float]:
    """Median wall of processes that start and touch no host: what start-up alone costs."""
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import fabric'": [sys.executable, "-c", "import fabric"],
        "python -m toolkit provision-runners --help": [
            sys.executable,
            "-m",
            "toolkit",
            "provision-runners",
            "--help",
        ],
    }
    return {
        label: round(statistics.median(run(command)[0] for _ in range(runs)), 4)
        for label, command in commands.items()
    }


# --- set-up and tear-down --------------------------------------------------------------------


def free_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def lab_hosts(workdir: Path, count: int) -> Iterator[Lab]:
    """`count` amd64 hosts on 127.0.0.101…; each removed at the end, also on errors."""
    rootfs = build_rootfs("amd64", extra_packages=ROOT_PACKAGES)
    key, public_key = lab_keypair(workdir)
    hosts: list[LabHost] = []
    try:
        for i, address in enumerate(ADDRESSES[:count], start=1):
            print(f"starting lab host bench-{i} on {address} ...", file=sys.stderr)
            hosts.append(
                start_host(
                    f"bench-{i}",
                    "amd64",
                    address,
                    free_port(address),
                    workdir,
                    authorized_keys=[public_key],
                    rootfs=rootfs,
                    # A non-root login with passwordless sudo, as real fleets have:
                    # both tools log in as it and become root (ssh.become / become: true).
                    users=[LabUser(BENCH_USER)],
                )
            )
        yield Lab(hosts, key, write_known_hosts(workdir / "known_hosts", hosts))
    finally:
        for host in hosts:
            host.remove()


@contextlib.contextmanager
def fake_servers(workdir: Path, roots: Sequence[Path] = ()) -> Iterator[Servers]:
    # Fresh random tokens: nothing real, and nothing a reader of the output could reuse.
    gitlab_token = f"glpat-{secrets.token_hex(10)}"
    jenkins_token = secrets.token_hex(16)
    with (
        GitLabFake(token=gitlab_token, project="platform/builds") as gitlab,
        FakeJenkins(workdir / "jenkins", "bench", jenkins_token, console=False) as jenkins,
        runner_downloads(STANDIN_SCRIPT.encode(), "amd64", workdir, roots) as downloads,
    ):
        runner_url = downloads.base
        env = {
            "BENCH_GITLAB_TOKEN": gitlab_token,
            "BENCH_JENKINS_USER": "bench",
            "BENCH_JENKINS_TOKEN": jenkins_token,
        }
        yield Servers(gitlab, jenkins, runner_url, env, (gitlab_token, jenkins_token))


def versions(ansible: Path, lab: Lab) -> dict[str, str]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout
    ansible_version = run([str(ansible), "--version"], env={**os.environ, "LC_ALL": "C.UTF-8"})[1]
    # The figures belong to the code measured; a dirty tree is said so.
    revision = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    ).stdout.strip()
    return {
        "revision": revision or "(no git)",
        "nproc": nproc.strip(),
        "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "fabric": importlib.metadata.version("fabric"),
        "paramiko": importlib.metadata.version("paramiko"),
        "ansible": ansible_version.splitlines()[0].strip(),
        "sshd": f"openssh-server {package_version(lab.hosts[0].root, 'openssh-server')}",
    }


def package_version(root: Path, package: str) -> str:
    """A package's version from a lab root's dpkg status (its binaries are not ours to run)."""
    status = (root / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in status.split("\n\n"):
        if f"Package: {package}\n" in f"{stanza}\n":
            found = re.search(r"^Version: (.+)$", stanza, re.MULTILINE)
            if found:
                return found.group(1)
    return "(version unknown)"


# --- the report ------------------------------------------------------------------------------


def goal(text: str, measured: float, met: bool) -> dict[str, Any]:
    return {"goal": text, "measured": round(measured, 2), "met": met}


def summarise(n: int, results: dict[str, Measurement]) -> dict[str, Any]:
    ours, peer, floor = (results[t].median for t in (OURS, ANSIBLE, FLOOR))
    section: dict[str, Any] = {
        "n": n,
        "results": [results[t].to_json() for t in TOOLS],
        "ratios": {
            "ansibleOverOurs": round(peer / ours, 3),
            "ansibleWarmOverOurs": round(results[ANSIBLE_WARM].median / ours, 3),
            "oursOverFloor": round(ours / floor, 3),
            "oursOffOverFloor": round(results[OURS_OFF].median / floor, 3),
            # Against the floor that runs the same remote work (our facts script): what is
            # left is ours alone (imports, inventory, server look-ups, planning, the table).
            "oursOverFactsFloor": round(ours / results[FLOOR_FACTS].median, 3),
        },
        "goals": {"oursOverFloor": goal("ours/floor <= 2", ours / floor, ours / floor <= 2)},
    }
    if n == len(ADDRESSES):
        section["goals"]["ansibleOverOurs"] = goal(
            "ansible/ours >= 5 at 8 hosts", peer / ours, peer / ours >= 5
        )
    return section


def scaling(sections: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    by_n = {s["n"]: s for s in sections}
    if 1 not in by_n or len(ADDRESSES) not in by_n:
        return None

    def ours(n: int) -> float:
        return float(by_n[n]["results"][TOOLS.index(OURS)]["wallMedian"])

    ratio = ours(len(ADDRESSES)) / ours(1)
    return goal("ours(8)/ours(1) <= 1.5", ratio, ratio <= 1.5)


def print_text(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"archfleet fleet-provisioning benchmark, {report['date']}, code {m['revision']}")
    print(f"machine:  nproc {m['nproc']}, {m['cpu']}, {m['kernel']}")
    print(f"          Python {m['python']}, fabric {m['fabric']}, paramiko {m['paramiko']}")
    print(f"          {m['ansible']} (venv {report['ansibleVenv']})")
    print(f"hosts:    amd64 lab hosts on {report['addresses']}, {m['sshd']},")
    print(f"          Debian bookworm root + {', '.join(ROOT_PACKAGES)}")
    print(f"measured: {report['measured']}")
    print(
        f"load:     1-min load average {report['loadAverageBefore']} before, "
        f"{report['loadAverageAfter']} after"
    )
    print(
        f"runs:     {report['runs']} per tool and N after one untimed round; "
        "wall = whole processes, round-robin"
    )
    print(f"bytecode: {report['bytecode']}")
    startup = ", ".join(f"{k} {v:.3f}s" for k, v in report["startupMedianSeconds"].items())
    print(f"start-up: (median, no host touched) {startup}")
    for drift in report["playbookDrift"]:
        print(f"NOTE:     the facts script checks {drift}, which the playbook does not")
    print("tools:")
    for tool in TOOLS:
        print(f"  {tool:<31} {TOOL_NOTES[tool]}")
    for section in report["sections"]:
        print()
        print(f"N = {section['n']}")
        print(f"  {'tool':<31} {'wall min':>8} {'median':>8} {'max':>8}  server requests")
        for r in section["results"]:
            extra = f"  {r['serverRequestsMedian']:g}" if "serverRequestsMedian" in r else ""
            print(
                f"  {r['tool']:<31} {r['wallMin']:>7.3f}s {r['wallMedian']:>7.3f}s "
                f"{r['wallMax']:>7.3f}s{extra}"
            )
        ratios = section["ratios"]
        print(
            f"  ansible/ours {ratios['ansibleOverOurs']:.2f} "
            f"(warm {ratios['ansibleWarmOverOurs']:.2f}), "
            f"ours/floor {ratios['oursOverFloor']:.2f} "
            f"(servers off {ratios['oursOffOverFloor']:.2f}), "
            f"ours/facts-script floor {ratios['oursOverFactsFloor']:.2f}"
        )
        print_goals(section["goals"])
    if report["scaling"] is not None:
        print()
        print_goals({"scaling": report["scaling"]})


def print_goals(goals: dict[str, dict[str, Any]]) -> None:
    print("  goals:")
    for item in goals.values():
        verdict = "met" if item["met"] else "NOT met"
        print(f"    {item['goal']:<30} measured {item['measured']:.2f}: {verdict}")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--hosts",
        default="1,8",
        help=f"comma-separated host counts N (each 1..{len(ADDRESSES)}); default 1,8",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool and N (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        args.ns = sorted({int(part) for part in args.hosts.split(",") if part.strip()})
    except ValueError:
        parser.error(f"--hosts: not a list of numbers: {args.hosts!r}")
    if not args.ns or any(not 1 <= n <= len(ADDRESSES) for n in args.ns):
        parser.error(f"--hosts: each N must be 1..{len(ADDRESSES)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM would otherwise skip the `finally` blocks that stop the hosts and fakes.
    raise SystemExit(128 + signum)


def benchmark(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    ansible = ansible_playbook()
    if not compile_bytecode():
        raise BenchError(f"compileall could not write the .pyc files under {REPO_ROOT / 'toolkit'}")
    count = max(args.ns)
    # Other work on a shared machine shows here; it makes wall times noisy.
    load_before = round(os.getloadavg()[0], 2)
    with (
        lab_hosts(tmp / "hosts", count) as lab,
        fake_servers(tmp, [h.root for h in lab.hosts]) as servers,
    ):
        inventories = {n: write_inventory(tmp / f"fleet-{n}.yml", lab, servers, n) for n in args.ns}
        print(f"provisioning {count} hosts once (both roles, fakes) ...", file=sys.stderr)
        provision_once(inventories[count], servers, count)
        quiet_runner_services(lab)
        files = write_ansible_files(tmp / "ansible", lab, args.ns)
        bench = Bench(lab, servers, ansible, files, inventories, tmp)
        sections = []
        try:
            for n in args.ns:
                print(f"measuring N = {n} ({args.runs} runs) ...", file=sys.stderr)
                sections.append(summarise(n, measure(bench, n, args.runs)))
        finally:
            for control in (tmp / "control").glob("*"):
                close_masters(control)
        return {
            "date": time.strftime("%Y-%m-%d"),
            "machine": versions(ansible, lab),
            "ansibleVenv": str(ansible.parent.parent),
            "addresses": ADDRESSES[0]
            + (f"-{ADDRESSES[count - 1].rsplit('.', 1)[1]}" if count > 1 else ""),
            "loadAverageBefore": load_before,
            "loadAverageAfter": round(os.getloadavg()[0], 2),
            "measured": "ours = no-op re-run of provision-runners with both roles, GitLab and "
            "Jenkins sides on (local HTTP fakes of their APIs; gitlab-runner stand-in)",
            "runs": args.runs,
            "bytecode": "toolkit's .pyc files compiled before timing, as pip install does "
            f"(PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '') or 'unset'})",
            "startupMedianSeconds": startup_floor(args.runs),
            "playbookDrift": playbook_drift(),
            "sections": sections,
            "scaling": scaling(sections),
        }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    with tempfile.TemporaryDirectory(prefix="archfleet-bench-fleet-") as tmp_name:
        try:
            report = benchmark(args, Path(tmp_name))
        except BenchError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
