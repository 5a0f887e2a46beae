"""SSH keys for the lab: the client key the lab logs in with, host keys, known_hosts lines.

Keys come from the machine's own `ssh-keygen` (OpenSSH formats, understood by OpenSSH,
paramiko and Fabric alike), never from inside an emulated root, where it would be slow.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import subprocess
from pathlib import Path

LAB_KEY_NAME = "id_ed25519"
LAB_KEY_COMMENT = "archfleet-lab"


class SshKeyError(RuntimeError):
    """A key could not be made or read; says which file and why."""


def lab_keypair(workdir: Path) -> tuple[Path, str]:
    """The lab's client key under `workdir`: (private key path, public key line).

    Made once per workdir and reused, so hosts started later accept the same key.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    private = workdir / LAB_KEY_NAME
    public = private.with_name(f"{LAB_KEY_NAME}.pub")
    if not (private.is_file() and public.is_file()):
        generate_ed25519(private, comment=LAB_KEY_COMMENT)
    return private, read_public_key(public)


def generate_ed25519(private: Path, *, comment: str) -> str:
    """Write a passphrase-less ed25519 key pair at `private` (+ `.pub`); return the public line."""
    # ssh-keygen asks before overwriting; a half-made pair is worth nothing, so start clean.
    private.unlink(missing_ok=True)
    public = private.with_name(f"{private.name}.pub")
    public.unlink(missing_ok=True)
    private.parent.mkdir(parents=True, exist_ok=True)
    command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(private)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SshKeyError("ssh-keygen not found on PATH (apt-get install openssh-client)") from None
    if done.returncode != 0:
        raise SshKeyError(
            f"ssh-keygen could not write {private} (status {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()}"
        )
    private.chmod(0o600)
    return read_public_key(public)


def read_public_key(path: Path) -> str:
    """`type base64 [comment]` from an OpenSSH .pub file, checked to be one key."""
    try:
        line = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SshKeyError(f"cannot read public key {path}: {error}") from None
    parse_public_key(line, source=str(path))
    return line


def parse_public_key(line: str, *, source: str = "public key") -> tuple[str, bytes]:
    """(key type, key blob) of an OpenSSH public key line; raises SshKeyError if malformed."""
    fields = line.split()
    if "\n" in line.strip() or len(fields) < 2:
        raise SshKeyError(f"{source}: expected one line 'TYPE BASE64 [COMMENT]', got {line!r}")
    key_type, encoded = fields[0], fields[1]
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise SshKeyError(f"{source}: key data is not base64") from None
    # The blob starts with its own type name; a mismatch means a mangled or spliced line.
    name_length = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else -1
    if blob[4 : 4 + name_length] != key_type.encode():
        raise SshKeyError(f"{source}: key data does not hold a {key_type} key")
    return key_type, blob


def fingerprint(public_key: str) -> str:
    """OpenSSH's SHA256 fingerprint (`ssh-keygen -l`): `SHA256:` + unpadded base64."""
    _, blob = parse_public_key(public_key)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def known_hosts_entry(address: str, port: int, public_key: str) -> str:
    """One OpenSSH known_hosts line: `[addr]:port type key`, or bare `addr` on port 22."""
    key_type, blob = parse_public_key(public_key)
    host = str(ipaddress.ip_address(address))
    pattern = host if port == 22 else f"[{host}]:{port}"
    return f"{pattern} {key_type} {base64.b64encode(blob).decode()}"
