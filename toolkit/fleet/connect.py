"""Fabric connections with a safe host-key policy, timeouts and jump hosts.

Fabric's default accepts any unknown host key (AutoAddPolicy); a provisioning tool hands
runner tokens to the host it talks to, so an unknown key is refused here (RejectPolicy)
and keys come from the inventory's known_hosts file (plus the system's).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import paramiko
from fabric import Config, Connection

from ..inventory import Host, SshSettings


class ConnectError(RuntimeError):
    """A host could not be reached or refused us; names the host and why."""


def _jump(spec: str, settings: SshSettings, config: Config) -> Connection:
    user, _, rest = spec.rpartition("@")
    host, _, port = rest.partition(":")
    gateway = Connection(
        host,
        user=user or settings.user,
        port=int(port) if port else 22,
        config=config,
        connect_timeout=int(settings.connect_timeout),
        connect_kwargs=_connect_kwargs(settings),
    )
    _secure(gateway, settings)
    return gateway


def _connect_kwargs(settings: SshSettings) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "banner_timeout": settings.connect_timeout,
        "auth_timeout": settings.connect_timeout,
    }
    if settings.key is not None:
        kwargs["key_filename"] = str(settings.key)
        # Only the key the inventory names: no surprise agent or ~/.ssh/id_* keys.
        kwargs["look_for_keys"] = False
        kwargs["allow_agent"] = False
    return kwargs


def _secure(connection: Connection, settings: SshSettings) -> None:
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if settings.known_hosts is not None:
        try:
            connection.client.load_host_keys(str(settings.known_hosts))
        except FileNotFoundError:
            raise ConnectError(f"known_hosts file {settings.known_hosts} does not exist") from None


def connect(host: Host) -> Connection:
    """A (lazy) connection to `host`; nothing is opened until the first command."""
    settings = host.ssh
    config = Config(
        overrides={
            "load_ssh_configs": settings.use_ssh_config,
            "run": {"hide": True, "warn": True, "in_stream": False},
            "timeouts": {"connect": int(settings.connect_timeout)},
        }
    )
    connection = Connection(
        host.address,
        user=settings.user,
        port=settings.port,
        config=config,
        connect_timeout=int(settings.connect_timeout),
        connect_kwargs=_connect_kwargs(settings),
        gateway=_jump(settings.jump_host, settings, config) if settings.jump_host else None,
    )
    _secure(connection, settings)
    return connection


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_script(connection: Connection, script: str, *, timeout: float, host: str) -> CommandResult:
    """Run a POSIX sh script in one round trip. The script travels as ONE quoted argument:
    whatever it contains, the remote login shell sees `sh -c '<script>'` and nothing else."""
    try:
        result = connection.run(f"sh -c {shlex.quote(script)}", timeout=timeout)
    except paramiko.BadHostKeyException as exc:
        raise ConnectError(
            f"{host}: host key mismatch ({exc.key.get_name()}); the known_hosts entry differs"
        ) from None
    except paramiko.SSHException as exc:
        text = str(exc)
        if "not found in known_hosts" in text:
            raise ConnectError(
                f"{host}: unknown host key; add it to the inventory's known_hosts "
                "(ssh-keyscan, after checking its fingerprint)"
            ) from None
        raise ConnectError(f"{host}: SSH failed ({text})") from None
    except OSError as exc:
        raise ConnectError(f"{host}: cannot connect ({exc.strerror or exc})") from None
    except Exception as exc:  # invoke's CommandTimedOut and friends
        if type(exc).__name__ == "CommandTimedOut":
            raise ConnectError(f"{host}: command timed out after {timeout:.0f} s") from None
        raise
    return CommandResult(result.exited, result.stdout, result.stderr)
