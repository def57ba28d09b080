"""Keystores and their passwords: no empty password, a warning for a password file others can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.errors import KeystoreError
from ledger.keystore import create_keystore, load_keystore, read_password

DEV_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's account 1


def test_an_empty_password_is_refused_when_creating(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="refusing an empty password"):
        create_keystore(tmp_path / "k.json", "", DEV_KEY)
    assert not (tmp_path / "k.json").exists()
    address = create_keystore(tmp_path / "k.json", "pw", DEV_KEY)
    assert load_keystore(tmp_path / "k.json", "pw").address == address


def test_a_password_file_others_can_read_is_warned_about_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared, private = tmp_path / "shared-pw", tmp_path / "private-pw"
    for path, mode in ((shared, 0o644), (private, 0o600)):
        path.write_text("secret\n")
        path.chmod(mode)
    assert read_password(private) == "secret"
    assert capsys.readouterr().err == ""
    assert read_password(shared) == "secret"
    assert read_password(shared) == "secret"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "password file" in err[0] and "0644" in err[0] and "chmod 600" in err[0], err
