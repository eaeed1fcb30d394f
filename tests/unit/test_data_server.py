"""The `dfs data` process on its own: flag errors in one line, a data dir of another
server or cluster refused before anything is served, SIGTERM finishing the upload in
flight, and the membership loop's ring view rules."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from dfs.auth import aio_channel, init_cluster_dir
from dfs.cli import build_parser
from dfs.client.replicas import upload_pieces
from dfs.data import server
from dfs.data.checksum import whole_checksum
from dfs.data.ringview import RingView
from dfs.data.store import ChunkStore
from dfs.datadir import Identity, claim
from dfs.placement.members import Member, RingConfig
from dfs.rpc import data_pb2, data_pb2_grpc
from tests.support.health import check_health
from tests.support.ports import free_addrs

DFS = [sys.executable, "-m", "dfs.cli", "data"]


def run_in_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, *argv: str
) -> tuple[int, str]:
    """`dfs data ARGV` up to the point it would serve; (exit status, logged errors)."""
    parser, _ = build_parser()
    args = parser.parse_args(["data", *argv])
    monkeypatch.setattr(server, "setup_logging", lambda *_: None)  # keep pytest's handlers
    monkeypatch.setattr(server, "serve", _must_not_serve)
    with caplog.at_level(logging.ERROR, logger="dfs.data"):
        status = server.run(args)
    return status, "\n".join(r.getMessage() for r in caplog.records)


async def _must_not_serve(*_: object) -> None:
    raise AssertionError("bad flags or a foreign data dir must stop before serving")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "missing --id, --listen, --meta, --data-dir"),
        (["--id", "1", "--listen", "127.0.0.1:1", "--meta", "127.0.0.1:2", "--data-dir", "x"],
         "--secret FILE"),
        (["--id", "0", "--listen", "127.0.0.1:1", "--meta", "127.0.0.1:2", "--data-dir", "x",
          "--insecure"], "--id must be a positive integer"),
        (["--id", "1", "--listen", "nowhere", "--meta", "127.0.0.1:2", "--data-dir", "x",
          "--insecure"], "is not HOST:PORT"),
        (["--id", "1", "--listen", "127.0.0.1:1", "--meta", "127.0.0.1:2", "--data-dir", "x",
          "--insecure", "--capacity", "-1"], "--capacity must be >= 0"),
    ],
)
def test_flag_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, argv: list[str],
    message: str,
) -> None:
    status, logged = run_in_process(monkeypatch, caplog, *argv)
    assert status == 2 and message in logged


def test_a_data_dir_of_another_server_or_cluster_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret_file, secret = init_cluster_dir(tmp_path / "cluster")
    data_dir = tmp_path / "data"
    claim(data_dir, Identity("data", 1, secret.cluster_id))
    common = ["--listen", "127.0.0.1:1", "--meta", "127.0.0.1:2", "--secret", str(secret_file)]
    status, logged = run_in_process(monkeypatch, caplog, "--id", "2", "--data-dir",
                                    str(data_dir), *common)
    assert status == 2 and "belongs to data server 1" in logged
    other_cluster_dir = tmp_path / "other"
    claim(other_cluster_dir, Identity("data", 1, "another-cluster"))
    caplog.clear()
    status, logged = run_in_process(monkeypatch, caplog, "--id", "1", "--data-dir",
                                    str(other_cluster_dir), *common)
    assert status == 2 and "another-cluster" in logged
    assert not (other_cluster_dir / "store").exists()


def test_sigterm_finishes_the_upload_in_flight_then_exits_0(tmp_path: Path) -> None:
    """No metadata server answers, so it never joins the ring (NOT_SERVING), but its
    Data service runs: an upload begun before SIGTERM completes, durably."""
    listen, dead_meta = free_addrs(2)
    data_dir = tmp_path / "data"
    proc = subprocess.Popen(
        [*DFS, "--id", "3", "--listen", listen, "--meta", dead_meta, "--data-dir",
         str(data_dir), "--insecure"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    content = os.urandom(3 * 1024 * 1024)
    try:
        deadline = time.monotonic() + 20
        while check_health(listen, 0.5) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check_health(listen, 0.5) == health_pb2.HealthCheckResponse.NOT_SERVING

        async def upload_across_sigterm() -> data_pb2.WriteChunkReply:
            pieces = upload_pieces(7, 1, content, whole_checksum(content))
            first_sent = asyncio.Event()

            async def stream() -> AsyncIterator[data_pb2.WriteChunkRequest]:
                yield pieces[0]
                first_sent.set()
                await asyncio.sleep(0.5)  # SIGTERM arrives in the middle of the upload
                for piece in pieces[1:]:
                    yield piece

            async with aio_channel(listen, None) as channel:
                call = data_pb2_grpc.DataStub(channel).WriteChunk(stream(), timeout=20)
                await first_sent.wait()
                await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                reply: data_pb2.WriteChunkReply = await call
                return reply

        reply = asyncio.run(upload_across_sigterm())
        assert reply.status == data_pb2.CHUNK_STATUS_OK and list(reply.durable_at) == [listen]
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "registering" in err and "stopped" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ChunkStore(data_dir / "store").read(7) == content


def test_ring_view_hears_newer_epochs_and_refuses_older_writers() -> None:
    async def body() -> None:
        view = RingView()
        assert not view.is_stale(0)
        view.hear(3)
        assert view.behind.is_set() and view.is_stale(2) and not view.is_stale(3)
        view.adopt(RingConfig(2, (Member(1, "h:1"),)))
        assert view.behind.is_set() and view.epoch == 3  # fetched, but still behind
        view.adopt(RingConfig(3, (Member(1, "h:1"), Member(2, "h:2"))))
        assert not view.behind.is_set() and view.fetched_epoch == 3
        view.adopt(RingConfig(1, (Member(1, "h:1"),)))  # an old answer changes nothing
        assert view.config is not None and view.config.epoch == 3

    asyncio.run(body())
