"""The generated code check: fresh code passes, an unregenerated edit fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "scripts" / "gen_proto"


def check(proto_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GEN), "--check", "--proto-dir", str(proto_dir)],
        capture_output=True, text=True, timeout=60,
    )


def test_committed_code_is_fresh() -> None:
    done = check(ROOT / "proto")
    assert done.returncode == 0, done.stderr


def test_edit_without_regeneration_fails(tmp_path: Path) -> None:
    edited = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", edited)
    common = edited / "dfs" / "v1" / "common.proto"
    common.write_text(common.read_text() + "\n// A new message.\nmessage Added { uint32 x = 1; }\n")
    done = check(edited)
    assert done.returncode == 1
    assert "stale: common_pb2.py" in done.stderr


def test_generated_modules_import_and_round_trip() -> None:
    from dfs.rpc import common_pb2, meta_pb2

    request = meta_pb2.LookupRequest(caller=common_pb2.Caller(uid=1000, groups=[4, 27]),
                                     parent=1, name=b"\xff\xfename")
    again = meta_pb2.LookupRequest.FromString(request.SerializeToString())
    assert again.name == b"\xff\xfename" and list(again.caller.groups) == [4, 27]
