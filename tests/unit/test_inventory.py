"""The inventory model: defaults, overrides, and an error for each kind of mistake that names
the file, the line, the key path and what was expected."""

from __future__ import annotations

import copy as copy_module
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolkit.inventory import SCHEMA, InventoryError, _validator_class, conforms, load

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(textwrap.dedent(text))
    return path


def test_example_inventory_loads_with_defaults_and_overrides() -> None:
    inventory = load(REPO / "examples" / "inventory.yml")
    amd, arm = inventory.hosts
    assert (amd.name, amd.declared_arch, amd.roles) == (
        "build-amd64-1",
        "amd64",
        ("gitlab-runner", "jenkins-agent", "merge-tool"),
    )
    assert arm.roles == ("gitlab-runner", "jenkins-agent")
    assert amd.ssh.port == 22 and arm.ssh.port == 2222
    assert arm.ssh.user == "ci" and arm.ssh.key is not None and arm.ssh.key.is_absolute()
    assert arm.tags == ("graviton",)
    assert inventory.gitlab is not None and inventory.gitlab.runner_type == "group_type"
    assert inventory.gitlab.tags == ("native",) and inventory.gitlab.locked is True
    assert inventory.jenkins is not None and inventory.jenkins.executors == 2
    assert inventory.builder.tool == "buildah"


def test_limit() -> None:
    inventory = load(REPO / "examples" / "inventory.yml")
    assert [h.name for h in inventory.limited(["build-arm64-1"]).hosts] == ["build-arm64-1"]
    with pytest.raises(InventoryError, match="unknown host\\(s\\) nope"):
        inventory.limited(["nope"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """
            hosts:
              - name: a
                address: 10.0.0.1
                roles: [gitlab-runner]
                tgas: [x]
            """,
            "fleet.yml:6: hosts[0]: unknown key(s) 'tgas' (expected one of: address, arch, "
            "executors, jenkins, labels, name, roles, ssh, tags); 'tgas': did you mean 'tags'?",
        ),
        (
            """
            hosts:
              - name: a
                roles: [jenkins-agent]
            jenkins: {url: https://j.example.com, credentials_id: c}
            """,
            "fleet.yml:3: hosts[0]: missing 'address'",
        ),
        (
            """
            hosts:
              - name: a
                address: 10.0.0.1
                arch: sparc
                roles: [gitlab-runner]
            gitlab: {url: https://g.example.com}
            """,
            "fleet.yml:5: hosts[0].arch: expected one of 386, amd64, arm-v6, arm-v7, arm64, "
            "ppc64le, riscv64, s390x; got 'sparc'",
        ),
        (
            """
            ssh: {port: "22"}
            hosts: [{name: a, address: h, roles: [gitlab-runner]}]
            gitlab: {url: https://g.example.com}
            """,
            "fleet.yml:2: ssh.port: expected an integer; got '22'",
        ),
        (
            """
            hosts:
              - name: "a; rm -rf /"
                address: h
                roles: [gitlab-runner]
            gitlab: {url: https://g.example.com}
            """,
            "fleet.yml:3: hosts[0].name: 'a; rm -rf /' does not match",
        ),
        (
            """
            hosts:
              - {name: a, address: h, roles: [gitlab-runner]}
            """,
            "fleet.yml:3: hosts[0].roles: role 'gitlab-runner' needs a top-level 'gitlab:' section",
        ),
        (
            """
            hosts:
              - {name: a, address: h, roles: [jenkins-agent]}
              - {name: a, address: h2, roles: [jenkins-agent]}
            jenkins: {url: https://j.example.com, credentials_id: c}
            """,
            "fleet.yml:4: hosts[1].name: duplicate host name 'a' (also hosts[0])",
        ),
        (
            """
            gitlab: {url: https://g.example.com, runner_type: project_type}
            hosts: [{name: a, address: h, roles: [gitlab-runner]}]
            """,
            "fleet.yml:2: gitlab.runner_type: runner_type project_type needs gitlab.project",
        ),
        ("hosts: [", "fleet.yml:1: not valid YAML"),
        ("hosts: []", "fleet.yml:1: hosts: [] should be non-empty"),
        (
            """
            hosts:
              - {name: a, address: h, roles: [builder]}
            """,
            "hosts[0].roles[0]: expected one of gitlab-runner, jenkins-agent, merge-tool; "
            "got 'builder'",
        ),
    ],
)
def test_errors_name_file_line_key_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(InventoryError) as info:
        load(write(tmp_path, text))
    message = str(info.value)
    assert expected in message, message
    assert str(tmp_path / "fleet.yml") in message


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        hosts:
          - {name: a, address: h, roles: [gitlab-runner], colour: red}
          - {name: b, roles: [gitlab-runner]}
        """,
    )
    with pytest.raises(InventoryError) as info:
        load(path)
    assert len(info.value.problems) == 2


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"nope\.yml: cannot read inventory"):
        load(tmp_path / "nope.yml")


def test_schema_is_json() -> None:
    text = json.dumps(SCHEMA)
    assert '"additionalProperties": false' in text and "hosts" in SCHEMA["required"]


# --- the fast check (inventory.conforms) against jsonschema ----------------------------------

_CANDIDATES: list[object] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    1.5,
    70000,
    float("nan"),
    "",
    "x",
    "build-1",
    "https://g.example.com",
    "/abs",
    "a b",
    "; rm -rf /",
    "a" * 300,
    "instance_type",
    "amd64",
    "gitlab-runner",
    "0" * 64,
    [],
    ["x"],
    ["x", "x"],
    ["gitlab-runner", "gitlab-runner"],
    [1],
    [True],
    [None],
    {},
    {"x": 1},
    {1: "x"},
]


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*path, index))
    return found


def _replaced(document: object, path: tuple[object, ...], value: object) -> object:
    if not path:
        return value
    copy = copy_module.deepcopy(document)
    parent: Any = copy
    for part in path[:-1]:
        parent = parent[part]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return copy


_DELETE = object()


def _mutations(document: dict[str, Any]) -> list[object]:
    mutated: list[object] = []
    for path in _paths(document):
        mutated += [_replaced(document, path, value) for value in _CANDIDATES]
        if path:
            mutated.append(_replaced(document, path, _DELETE))
        target: Any = document
        for part in path:
            target = target[part]
        if isinstance(target, dict):
            mutated.append(_replaced(document, path, {**target, "unknown_key": 1}))
    return mutated


@pytest.mark.parametrize("source", ["examples/inventory.yml", "lab"])
def test_the_fast_check_never_passes_what_jsonschema_refuses(source: str) -> None:
    """conforms() is what spares a sound file jsonschema's import: it must never say yes where
    jsonschema says no — every value of a real inventory is replaced in turn by values of
    every kind, every key deleted, an unknown key added to every mapping."""
    if source == "lab":
        text = textwrap.dedent(
            """
            ssh: {user: root, key: /k, known_hosts: /kh, use_ssh_config: false, port: 22,
                  connect_timeout: 5, command_timeout: 60.5, jump_host: j, ssh_config_file: /c}
            builder: {tool: docker, install: false, group: docker}
            gitlab:
              url: http://127.0.0.1:1
              allow_http: true
              runner_type: project_type
              project: platform/builds
              tags: [native, fast]
              runner_sha256:
                amd64: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
              locked: false
            jenkins: {url: http://127.0.0.1:2, allow_http: true, credentials_id: lab, executors: 2,
                      labels: [x]}
            hosts:
              - {name: a-1, address: 127.0.0.1, arch: amd64, roles: [gitlab-runner],
                 ssh: {port: 2222}, tags: [t], labels: [l], executors: 3}
            """
        )
    else:
        text = (REPO / source).read_text()
    document = yaml.safe_load(text)
    validator = _validator_class()(SCHEMA)
    assert conforms(document) and not list(validator.iter_errors(document))
    refused = passed = 0
    for mutated in _mutations(document):
        valid = not list(validator.iter_errors(mutated))
        if conforms(mutated):
            assert valid, mutated
            passed += 1
        refused += not valid
    # Both answers really occur: the mutations reach past the fast check both ways.
    assert refused > 100 and passed > 50


def test_a_file_the_fast_check_doubts_but_jsonschema_accepts_loads(tmp_path: Path) -> None:
    # 22.0 is an integer to JSON Schema; the fast check leaves such a value to jsonschema.
    path = write(
        tmp_path,
        """
        ssh: {port: 22.0}
        hosts: [{name: a, address: h, roles: [gitlab-runner]}]
        gitlab: {url: https://g.example.com, group: g}
        """,
    )
    assert not conforms(yaml.safe_load(path.read_text()))
    assert load(path).hosts[0].ssh.port == 22


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.1>x", "hosts[0].address: '10.0.0.1>x' does not match"),
        ("h;id", "hosts[0].address: 'h;id' does not match"),
        ("build host", "hosts[0].address: 'build host' does not match"),
        ("$(id)", "hosts[0].address: '$(id)' does not match"),
        ("10.0.0.1\n", "hosts[0].address: '10.0.0.1\\n' does not match"),
        ("10.0.0.256", "hosts[0].address: '10.0.0.256' is not an IPv4 address"),
        ("fe80::1::2", "hosts[0].address: 'fe80::1::2' is not an IPv6 address"),
        ("-oProxyCommand", "hosts[0].address: '-oProxyCommand' does not match"),
        ("a..b", "hosts[0].address: 'a..b' is not a hostname"),
    ],
)
def test_hostile_addresses_are_refused_with_file_line_and_key(
    tmp_path: Path, address: str, expected: str
) -> None:
    """Addresses reach paramiko's ssh config (`Match exec %h`) and Jenkins node configs."""
    path = write(
        tmp_path,
        f"""
        hosts:
          - name: a
            address: {json.dumps(address)}
            roles: [jenkins-agent]
        jenkins: {{url: https://j.example.com, credentials_id: c}}
        """,
    )
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.problems[0].startswith(f"{path}:4: {expected}")


@pytest.mark.parametrize("address", ["build-1.example.com", "10.0.0.1", "::1", "fe80::1%eth0"])
def test_plain_addresses_load(tmp_path: Path, address: str) -> None:
    path = write(
        tmp_path,
        f"""
        hosts: [{{name: a, address: {json.dumps(address)}, roles: [jenkins-agent]}}]
        jenkins: {{url: https://j.example.com, credentials_id: c}}
        """,
    )
    assert load(path).hosts[0].address == address


def test_a_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    """`$` in Python's re.search matches before a final newline; the schema's does not."""
    path = write(
        tmp_path,
        """
        hosts: [{name: "a\\n", address: h, roles: [jenkins-agent]}]
        jenkins: {url: https://j.example.com, credentials_id: c}
        """,
    )
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}:2: hosts[0].name: 'a\\n' does not match "
        "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ (allowed characters only)"
    ]


def test_jump_host_is_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        ssh: {jump_host: "ci@bastion;id:22"}
        hosts: [{name: a, address: h, roles: [jenkins-agent], jenkins: {address: a.lan}}]
        jenkins: {url: https://j.example.com, credentials_id: c}
        """,
    )
    with pytest.raises(InventoryError) as caught:
        load(path)
    assert caught.value.problems == [
        f"{path}:2: ssh.jump_host: jump host 'ci@bastion;id:22': 'bastion;id' is not a "
        "hostname (labels of letters, digits, '-'); expected a hostname, an IPv4 or an IPv6 "
        "address"
    ]


@pytest.mark.parametrize("section", ["gitlab", "jenkins"])
def test_plain_http_server_urls_are_refused_unless_allowed(tmp_path: Path, section: str) -> None:
    role = "gitlab-runner" if section == "gitlab" else "jenkins-agent"
    body = "{url: 'http://ci.example.com', credentials_id: c"
    if section == "gitlab":
        body = "{url: 'http://ci.example.com', group: g"
    text = f"""
        hosts: [{{name: a, address: h, roles: [{role}]}}]
        {section}: {body}}}
        """
    with pytest.raises(InventoryError) as caught:
        load(write(tmp_path, text))
    assert caught.value.problems == [
        f"{tmp_path}/fleet.yml:3: {section}.url: 'http://ci.example.com' is plain http: the API "
        f"token would travel in clear; expected https://… (or set {section}.allow_http: true for "
        "a lab)"
    ]
    allowed = load(write(tmp_path, text.replace("{url:", "{allow_http: true, url:")))
    assert getattr(allowed, section).allow_http is True


def test_runner_type_defaults_to_the_group_or_the_project(tmp_path: Path) -> None:
    group = load(
        write(
            tmp_path,
            """
            hosts: [{name: a, address: h, roles: [gitlab-runner]}]
            gitlab: {url: https://g.example.com, group: platform}
            """,
        )
    )
    assert group.gitlab is not None and group.gitlab.runner_type == "group_type"
    project = load(
        write(
            tmp_path,
            """
            hosts: [{name: a, address: h, roles: [gitlab-runner]}]
            gitlab: {url: https://g.example.com, project: platform/app}
            """,
        )
    )
    assert project.gitlab is not None and project.gitlab.runner_type == "project_type"
    with pytest.raises(InventoryError) as caught:
        load(
            write(
                tmp_path,
                """
                hosts: [{name: a, address: h, roles: [gitlab-runner]}]
                gitlab: {url: https://g.example.com}
                """,
            )
        )
    assert "gitlab: runner_type group_type (the default) needs gitlab.group" in str(caught.value)


def test_a_shared_shell_runner_needs_an_explicit_yes(tmp_path: Path) -> None:
    text = """
        hosts: [{name: a, address: h, roles: [gitlab-runner]}]
        gitlab: {url: https://g.example.com, runner_type: instance_type}
        """
    with pytest.raises(InventoryError) as caught:
        load(write(tmp_path, text))
    assert caught.value.problems == [
        f"{tmp_path}/fleet.yml:3: gitlab.runner_type: an instance_type runner with the shell "
        "executor runs every project's jobs on the build host as gitlab-runner (in the docker "
        "group, that is root): expected group_type or project_type, or set "
        "gitlab.allow_shared_shell: true"
    ]
    shared = load(
        write(tmp_path, text.replace("instance_type}", "instance_type, allow_shared_shell: true}"))
    )
    assert shared.gitlab is not None and shared.gitlab.runner_type == "instance_type"
    docker = load(
        write(tmp_path, text.replace("instance_type}", "instance_type, executor: docker}"))
    )
    assert docker.gitlab is not None and docker.gitlab.executor == "docker"


def test_gitlab_runner_download_is_pinned_https_and_checked_by_default(tmp_path: Path) -> None:
    inventory = load(
        write(
            tmp_path,
            """
            hosts: [{name: a, address: h, roles: [gitlab-runner]}]
            gitlab: {url: https://g.example.com, group: g}
            """,
        )
    )
    gitlab = inventory.gitlab
    assert gitlab is not None and gitlab.runner_version == "19.3.0" and gitlab.concurrent == 2
    assert gitlab.runner_url.startswith("https://") and "latest" not in gitlab.runner_url
    assert gitlab.runner_checksums_url.endswith("/v{version}/release.sha256")
    with pytest.raises(InventoryError) as caught:
        load(
            write(
                tmp_path,
                """
                hosts: [{name: a, address: h, roles: [gitlab-runner]}]
                gitlab: {url: https://g.example.com, group: g, runner_url: "http://x/{arch}"}
                """,
            )
        )
    assert "gitlab.runner_url: 'http://x/{arch}' does not match" in str(caught.value)
