"""The lab's binfmt set-up gives foreign setuid binaries (arm64 sudo) their credentials: an
entry registered without C is re-registered with it, in place, on the REAL binfmt_misc of this
machine — with a throw-away entry of our own, so no arm64 binary is ever without a handler."""

from __future__ import annotations

import pytest

from toolkit.lab.images import BINFMT_MOUNT, _add_credentials_flag, _binfmt_field

pytestmark = pytest.mark.integration

NAME = "archfleet-selftest"
# A magic no real file has ("\x7fELFTEST"), handled by /bin/true.
SPEC = (
    rf":{NAME}:M:0:\x7f\x45\x4c\x46\x54\x45\x53\x54:\xff\xff\xff\xff\xff\xff\xff\xff"
    ":/bin/true:F"
)


def test_an_entry_without_c_gets_it_and_keeps_the_rest() -> None:
    if not (BINFMT_MOUNT / "register").exists():
        pytest.skip("binfmt_misc is not mounted here")
    entry = BINFMT_MOUNT / NAME
    if entry.exists():
        entry.write_text("-1")
    (BINFMT_MOUNT / "register").write_text(SPEC)
    try:
        assert _binfmt_field(entry, "flags") == "F"
        _add_credentials_flag(entry, "F")
        assert _binfmt_field(entry, "flags") == "OCF"  # C implies O
        assert _binfmt_field(entry, "magic") == "7f454c4654455354"
        assert _binfmt_field(entry, "interpreter") == "/bin/true"
        assert not (BINFMT_MOUNT / f"{NAME}-archfleet-twin").exists()
    finally:
        if entry.exists():
            entry.write_text("-1")
