"""skopeo as the independent client: which image does an `os/arch[/variant]` client get?"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path


class SkopeoError(RuntimeError):
    pass


def resolved_digest(ref: str, platform: str, *, insecure: bool = True) -> str:
    """Digest of the image skopeo pulls from `ref` for `platform` (e.g. `linux/arm/v7`).

    `skopeo inspect` reports the index's own digest, so copy the chosen image out and hash the
    manifest skopeo stored: it keeps the registry's bytes.
    """
    os_name, arch, *variant = platform.split("/")
    args = [
        "skopeo",
        "copy",
        "-q",
        f"--src-tls-verify={'false' if insecure else 'true'}",
        "--override-os",
        os_name,
        "--override-arch",
        arch,
    ]
    if variant:
        args += ["--override-variant", variant[0]]
    with tempfile.TemporaryDirectory(prefix="archfleet-skopeo-") as out:
        done = subprocess.run(
            [*args, f"docker://{ref}", f"dir:{out}"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise SkopeoError(f"skopeo copy {ref} as {platform}: {done.stderr.strip()[-400:]}")
        raw = (Path(out) / "manifest.json").read_bytes()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def inspect_command(ref: str, platform: str, *, insecure: bool = True) -> str:
    """The command a user can paste to see for themselves."""
    os_name, arch, *variant = platform.split("/")
    flags = " --tls-verify=false" if insecure else ""
    extra = f" --override-variant {variant[0]}" if variant else ""
    return (
        f"skopeo inspect{flags} --override-os {os_name} --override-arch {arch}{extra} "
        f"docker://{ref}"
    )
