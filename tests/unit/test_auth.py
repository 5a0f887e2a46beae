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


def test_docker_hub_credentials_only_under_hubs_key(tmp_path: Path) -> None:
    """docker/cli configfile/file.go getAuthConfigKey: docker.io and index.docker.io are looked
    up under https://index.docker.io/v1/ only (file_store.go Get: that key has a scheme, so no
    hostname fallback can match it)."""
    hub_only = write_config(tmp_path, {"docker.io": {"auth": base64.b64encode(b"a:b").decode()}})
    assert resolve_credentials("docker.io", {}, hub_only) is None
    config = write_config(
        tmp_path,
        {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:hubpw").decode()}},
    )
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        creds = resolve_credentials(name, {}, config)
        assert creds is not None and creds.username == "hub", name


def test_legacy_keys_match_by_hostname_like_docker(tmp_path: Path) -> None:
    """file_store.go Get falls back to ConvertToHostname(key) == registry."""
    config = write_config(
        tmp_path,
        {
            "https://r.io:5000/v1/": {"username": "legacy", "password": "pw"},
            "http://other.io/": {"username": "o", "password": "pw"},
        },
    )
    creds = resolve_credentials("r.io:5000", {}, config)
    assert creds is not None and creds.username == "legacy"
    other = resolve_credentials("other.io", {}, config)
    assert other is not None and other.username == "o"
    assert resolve_credentials("r.io", {}, config) is None  # the port is part of the name


def test_auth_field_wins_over_username_and_password(tmp_path: Path) -> None:
    """configfile.LoadFromReader decodes `auth` over username/password when it is set."""
    config = write_config(
        tmp_path,
        {
            "r.io": {
                "auth": base64.b64encode(b"fromauth:pw1").decode(),
                "username": "plain",
                "password": "pw2",
            }
        },
    )
    creds = resolve_credentials("r.io", {}, config)
    assert creds is not None and (creds.username, creds.password) == ("fromauth", "pw1")
