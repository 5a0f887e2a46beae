"""Credential lookup order and WWW-Authenticate parsing."""

import base64
import json
from pathlib import Path

import pytest

from toolkit.registry.auth import CredentialsError, parse_challenge, resolve_credentials


def test_bearer_challenge() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:group/app:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:group/app:pull,push",
    }


def test_basic_challenge_and_empty() -> None:
    challenge = parse_challenge('Basic realm="Registry Realm"')
    assert challenge is not None and challenge.scheme == "basic"
    assert challenge.params["realm"] == "Registry Realm"
    assert parse_challenge("") is None


def write_config(tmp_path: Path, auths: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return path


def test_registry_user_wins(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"r.io": {"auth": base64.b64encode(b"cfg:cfgpw").decode()}})
    env = {
        "REGISTRY_USER": "env",
        "REGISTRY_PASSWORD": "envpw",
        "CI_REGISTRY": "r.io",
        "CI_REGISTRY_USER": "ci",
        "CI_REGISTRY_PASSWORD": "cipw",
    }
    creds = resolve_credentials("r.io", env, config)
    assert creds is not None and (creds.username, creds.password) == ("env", "envpw")


def test_ci_registry_only_for_its_own_registry(tmp_path: Path) -> None:
    env = {
        "CI_REGISTRY": "registry.gitlab.example.com",
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token",
    }
    missing = tmp_path / "none.json"
    creds = resolve_credentials("registry.gitlab.example.com", env, missing)
    assert creds is not None and creds.username == "gitlab-ci-token"
    assert resolve_credentials("other.example.com", env, missing) is None


def test_docker_config_auth_and_username_password(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()},
            "localhost:5000": {"username": "u", "password": "p"},
        },
    )
    hub = resolve_credentials("docker.io", {}, config)
    assert hub is not None and (hub.username, hub.password) == ("hub", "hubpw")
    local = resolve_credentials("localhost:5000", {}, config)
    assert local is not None and local.password == "p"
    assert resolve_credentials("elsewhere.io", {}, config) is None


def test_bad_docker_config_names_the_file_and_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"r.io": {"auth": base64.b64encode(b"nocolon").decode()}})
    with pytest.raises(CredentialsError) as info:
        resolve_credentials("r.io", {}, config)
    assert str(config) in str(info.value) and "auths['r.io'].auth" in str(info.value)


def test_password_never_in_repr(tmp_path: Path) -> None:
    creds = resolve_credentials("r.io", {"REGISTRY_USER": "u", "REGISTRY_PASSWORD": "s3cr3t-pw"})
    assert creds is not None
    assert "s3cr3t-pw" not in repr(creds) and "s3cr3t-pw" not in str(creds)
