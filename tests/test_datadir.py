"""The data directory is private to its owner, and the secrets in it are generated once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from myspinbot import datadir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_0700(tmp_path: Path) -> None:
    said: list[str] = []
    path = datadir.private_dir(tmp_path / "a" / "data", said.append)
    assert mode(path) == 0o700
    assert said == []  # nothing was loosened before: nothing to say


def test_an_existing_looser_data_dir_is_tightened_and_said(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    (path / "kept.txt").write_text("x")
    said: list[str] = []
    datadir.private_dir(path, said.append)
    assert mode(path) == 0o700
    assert (path / "kept.txt").read_text() == "x"
    assert len(said) == 1 and "0755" in said[0] and "0700" in said[0] and str(path) in said[0]


def test_a_secret_is_generated_once_0600_and_reused(tmp_path: Path) -> None:
    said: list[str] = []
    first = datadir.secret(tmp_path, datadir.REDIS_PASSWORD, said.append)
    path = tmp_path / "secrets" / datadir.REDIS_PASSWORD
    assert mode(path) == 0o600 and mode(tmp_path / "secrets") == 0o700
    assert len(first) >= 32 and path.read_text().strip() == first
    assert any("generated" in line for line in said)
    again = datadir.secret(tmp_path, datadir.REDIS_PASSWORD)
    assert again == first
    # Each secret is its own random value.
    assert datadir.secret(tmp_path, datadir.S3_SECRET_KEY) != first


def test_a_readable_secret_file_is_tightened(tmp_path: Path) -> None:
    value = datadir.secret(tmp_path, datadir.TRITON_ADMIN_KEY)
    path = tmp_path / "secrets" / datadir.TRITON_ADMIN_KEY
    path.chmod(0o644)
    said: list[str] = []
    assert datadir.secret(tmp_path, datadir.TRITON_ADMIN_KEY, said.append) == value
    assert mode(path) == 0o600 and "tightened" in said[0]


def test_a_hand_written_secret_is_used_and_a_bad_one_is_refused_readably(
    tmp_path: Path,
) -> None:
    folder = datadir.secrets_dir(tmp_path)
    (folder / datadir.REDIS_PASSWORD).write_text("my-own-long-password_42\n")
    assert datadir.secret(tmp_path, datadir.REDIS_PASSWORD) == "my-own-long-password_42"
    (folder / datadir.S3_SECRET_KEY).write_text("short, with comma\n")
    with pytest.raises(RuntimeError, match="delete the file"):
        datadir.secret(tmp_path, datadir.S3_SECRET_KEY)
