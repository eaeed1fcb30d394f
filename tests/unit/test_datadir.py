"""Data dirs remember whose they are and refuse anyone else."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfs.datadir import DataDirError, Identity, claim, read_identity


def test_first_claim_records_then_matches(tmp_path: Path) -> None:
    me = Identity("meta", 1, "abc")
    assert claim(tmp_path / "d", me) is True
    assert read_identity(tmp_path / "d") == me
    assert claim(tmp_path / "d", me) is False


@pytest.mark.parametrize(
    "other, message",
    [
        (Identity("meta", 1, "zzz"), "belongs to cluster abc"),
        (Identity("meta", 2, "abc"), "meta server 1, not meta server 2"),
        (Identity("data", 1, "abc"), "meta server 1, not data server 1"),
    ],
)
def test_foreign_dirs_are_refused(tmp_path: Path, other: Identity, message: str) -> None:
    claim(tmp_path, Identity("meta", 1, "abc"))
    with pytest.raises(DataDirError, match=message):
        claim(tmp_path, other)


def test_non_empty_dir_without_identity_is_refused(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("x")
    with pytest.raises(DataDirError, match="not empty"):
        claim(tmp_path, Identity("data", 1, "abc"))
    assert (tmp_path / "precious").read_text() == "x"
