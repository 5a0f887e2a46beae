"""Which connect failures are retried: only a connection the server closed or reset before the
key exchange was done (what sshd's MaxStartups does). The real-server side of this is
tests/integration/test_ssh_limits.py; here the cases a real sshd does not produce on demand
(a reset after the key exchange) are checked on paramiko's own exception types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import paramiko
import pytest

from toolkit.fleet.connect import (
    _BACKOFF_BASE,
    _BACKOFF_CAP,
    _backoff,
    _dropped_before_key_exchange,
)


@dataclass
class Transport:
    host_key: Any = None


@dataclass
class Client:
    transport: Transport | None

    def get_transport(self) -> Transport | None:
        return self.transport


@dataclass
class Connection:
    """What the classifier looks at: how far the failed attempt's transport got."""

    client: Client = field(default_factory=lambda: Client(None))


BEFORE_KEX = Connection(Client(Transport()))
AFTER_KEX = Connection(Client(Transport(host_key=object())))  # the server's key was received


@pytest.mark.parametrize(
    "error",
    [
        paramiko.SSHException("Error reading SSH protocol banner"),
        paramiko.SSHException("Error reading SSH protocol banner[Errno 104] Connection reset"),
        paramiko.SSHException("Negotiation failed."),
        paramiko.SSHException("No existing session"),
        EOFError(),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
    ],
)
def test_a_drop_before_the_key_exchange_is_retried(error: Exception) -> None:
    assert _dropped_before_key_exchange(error, BEFORE_KEX)
    assert _dropped_before_key_exchange(error, Connection())  # no transport made yet
    # The same error once the server's host key was received: it came later, no retry.
    assert not _dropped_before_key_exchange(error, AFTER_KEX)


@pytest.mark.parametrize(
    "error",
    [
        paramiko.AuthenticationException("Authentication failed."),
        paramiko.BadAuthenticationType("Bad authentication type", ["password"]),
        paramiko.SSHException("Server '[10.0.0.5]:22' not found in known_hosts"),
        paramiko.SSHException("Incompatible ssh peer (no acceptable kex algorithm)"),
        paramiko.ssh_exception.NoValidConnectionsError(
            {("10.0.0.5", 22): ConnectionRefusedError()}
        ),
        TimeoutError("timed out"),
        ValueError("not an SSH failure"),
    ],
)
def test_anything_else_is_not_retried(error: Exception) -> None:
    assert not _dropped_before_key_exchange(error, BEFORE_KEX)


def test_a_changed_host_key_is_not_retried() -> None:
    got, expected = paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()
    error = paramiko.BadHostKeyException("h", got, expected)
    assert not _dropped_before_key_exchange(error, BEFORE_KEX)
    assert not _dropped_before_key_exchange(error, AFTER_KEX)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 8])
def test_backoff_doubles_up_to_a_cap_with_jitter(attempt: int) -> None:
    ceiling = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1))
    waits = {_backoff(attempt) for _ in range(200)}
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    assert len(waits) > 1  # jittered: hosts dropped together come back apart
