"""The fixture library itself: a throwaway server behind the auth interceptor
is started, probed for health, refused without the secret, served with it, and
killed; nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from dfs.auth import read_secret, sync_channel
from dfs.rpc import admin_pb2, admin_pb2_grpc
from tests.support.health import NotHealthy, check_health, wait_healthy
from tests.support.ports import free_addrs
from tests.support.procs import ProcessSet, leftover_processes

THROWAWAY = Path(__file__).resolve().parent.parent / "support" / "throwaway_server.py"


def start_throwaway(procs: ProcessSet, secret_file: Path):  # type: ignore[no-untyped-def]
    (addr,) = free_addrs(1)
    proc = procs.start_python("throwaway", THROWAWAY, "--listen", addr, "--secret",
                              str(secret_file), addr=addr)
    proc.wait_healthy(timeout_s=20)
    return proc


def test_throwaway_server_auth_health_and_kill(procs: ProcessSet, secret_file: Path) -> None:
    proc = start_throwaway(procs, secret_file)
    secret = read_secret(secret_file)

    with sync_channel(proc.addr, None) as bare:  # type: ignore[arg-type]
        with pytest.raises(grpc.RpcError) as refused:
            admin_pb2_grpc.AdminStub(bare).Status(admin_pb2.StatusRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert secret.token not in (refused.value.details() or "")

    with sync_channel(proc.addr, secret) as authed:  # type: ignore[arg-type]
        status = admin_pb2_grpc.AdminStub(authed).Status(admin_pb2.StatusRequest(), timeout=5)
    assert status.cluster_id == secret.cluster_id
    assert status.addr == proc.addr

    proc.kill()
    assert not proc.alive()
    assert check_health(proc.addr, timeout_s=0.5) is None  # type: ignore[arg-type]
    assert secret.token not in proc.log_path.read_text(), "the secret must never be logged"


def test_wrong_secret_is_refused(procs: ProcessSet, secret_file: Path, tmp_path: Path) -> None:
    from dfs.auth import init_cluster_dir

    proc = start_throwaway(procs, secret_file)
    _, other = init_cluster_dir(tmp_path / "other")
    with sync_channel(proc.addr, other) as wrong, pytest.raises(grpc.RpcError) as refused:  # type: ignore[arg-type]
        admin_pb2_grpc.AdminStub(wrong).Status(admin_pb2.StatusRequest(), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sigterm_stops_cleanly(procs: ProcessSet, secret_file: Path) -> None:
    proc = start_throwaway(procs, secret_file)
    assert proc.stop(timeout_s=10) == 0
    assert "SIGTERM: stopping" in proc.log_path.read_text()


def test_wait_healthy_notices_an_early_exit(procs: ProcessSet, tmp_path: Path) -> None:
    (addr,) = free_addrs(1)
    proc = procs.start_python("dies", THROWAWAY, "--listen", addr, "--secret",
                              str(tmp_path / "missing"), addr=addr)
    with pytest.raises(NotHealthy, match="exited"):
        proc.wait_healthy(timeout_s=20)
    assert "missing" in proc.log_tail()


def test_cleanup_kills_whole_process_group(procs: ProcessSet) -> None:
    # A shell that starts a grandchild: cleanup must take both.
    proc = procs.start("group", ["sh", "-c", "sleep 300 & sleep 300"])
    procs.cleanup()
    assert not proc.alive()
    assert not [line for line in leftover_processes() if "sleep 300" in line]


def test_wait_healthy_times_out_when_nothing_listens() -> None:
    (addr,) = free_addrs(1)
    with pytest.raises(NotHealthy, match="not SERVING"):
        wait_healthy(addr, timeout_s=1.0)
