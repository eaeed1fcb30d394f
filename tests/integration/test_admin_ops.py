"""The operator's tools on one real cluster (`dfs up --tls --metrics`): mutual TLS
end to end through the mount and refusing strangers, every process's metrics
endpoint parsed and moving, every admin command in human and --json form, and
fsck finding planted damage (a missing chunk, a corrupt copy, an orphan chunk,
a link-count mismatch) and repairing what it reports as repairable."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import random
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dfs.auth import ClusterSecret, TlsFiles, new_secret, read_tls, secret_from_flags, sync_channel
from dfs.cli import main
from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.fuse.translate import NOBODY
from dfs.meta.replicated import MetaStateMachine
from dfs.paxos import snapshot as snapshot_files
from dfs.paxos.node import SNAPSHOT_DIR
from dfs.rpc import admin_pb2, admin_pb2_grpc, common_pb2
from dfs.tlsca import issue, make_ca
from tests.support.data_cluster import _chunk_path, flip_byte_in_copy, write_file
from tests.support.local_cluster import DFS, LocalCluster
from tests.support.procs import RUN_TOKEN, RUN_TOKEN_ENV

pytestmark = pytest.mark.fuse
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not Path("/dev/fuse").exists():
        pytest.skip("no /dev/fuse on this machine")
    root = tmp_path_factory.mktemp("ops")
    local = LocalCluster(root / "cluster", root / "mnt")
    try:
        local.up("--tls", "--metrics")
        yield local
    finally:
        local.down()


def secret_of(cluster: LocalCluster) -> ClusterSecret:
    record = cluster.record()
    tls: dict[str, str] = record["tls"]  # type: ignore[assignment]
    secret = secret_from_flags(str(record["secret"]), False,
                               read_tls(tls["cert"], tls["key"], tls["ca"]))
    assert secret is not None and secret.tls is not None
    return secret


def meta_addrs(cluster: LocalCluster) -> list[str]:
    return [m["addr"] for m in cluster.record()["meta"]]  # type: ignore[attr-defined]


def admin(cluster: LocalCluster, *words: str) -> tuple[int, str]:
    """`dfs admin --cluster ... WORDS`, run in this process (the same code as the
    command line, without an interpreter start per call)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["admin", "--cluster", str(cluster.cluster_file), *words])
    assert code in (0, 1), f"{words}: {code} {err.getvalue()}"
    return code, out.getvalue()


def admin_json(cluster: LocalCluster, *words: str) -> tuple[int, Any]:
    code, out = admin(cluster, "--json", *words)
    return code, json.loads(out)


def status_code(addr: str, secret: ClusterSecret) -> grpc.StatusCode:
    with sync_channel(addr, secret) as channel:
        try:
            admin_pb2_grpc.AdminStub(channel).Status(admin_pb2.StatusRequest(), timeout=5)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_tls_cluster_serves_the_mount_and_refuses_strangers(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    payload = random.Random(1).randbytes(3 * 1024 * 1024 + 17)
    (cluster.mount / "over-tls.bin").write_bytes(payload)
    assert (cluster.mount / "over-tls.bin").read_bytes() == payload
    secret = secret_of(cluster)
    make_ca(tmp_path / "other")
    other = issue(tmp_path / "other", "node", ["127.0.0.1"])
    foreign = TlsFiles(other.cert.read_bytes(), other.key.read_bytes(),
                       (tmp_path / "other" / "ca.pem").read_bytes())
    addr = meta_addrs(cluster)[0]
    assert status_code(addr, secret) == grpc.StatusCode.OK
    assert status_code(addr, replace(secret, tls=None)) == grpc.StatusCode.UNAVAILABLE
    assert status_code(addr, replace(secret, tls=foreign)) == grpc.StatusCode.UNAVAILABLE
    assert status_code(addr, replace(new_secret(), tls=secret.tls)) == (
        grpc.StatusCode.UNAUTHENTICATED)


def scrape(addr: str) -> Samples:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(value for (sample, have), value in samples.items()
               if sample == name and set(labels.items()) <= set(have))


def test_every_process_serves_metrics_that_move_with_work(cluster: LocalCluster) -> None:
    record = cluster.record()
    metas = [m["metrics"] for m in record["meta"]]  # type: ignore[attr-defined]
    datas = [d["metrics"] for d in record["data"]]  # type: ignore[attr-defined]
    mount = record["mount"]["metrics"]  # type: ignore[index]

    def everything() -> tuple[list[Samples], list[Samples], Samples]:
        return [scrape(a) for a in metas], [scrape(a) for a in datas], scrape(mount)

    meta_before, data_before, mount_before = everything()
    assert sum(total(s, "dfs_paxos_is_leader") for s in meta_before) == 1
    assert sum(total(s, "dfs_paxos_elections_total") for s in meta_before) >= 1
    payload = os.urandom(2 * 1024 * 1024)
    (cluster.mount / "metrics.bin").write_bytes(payload)
    os.sync()
    assert (cluster.mount / "metrics.bin").read_bytes() == payload
    meta_after, data_after, mount_after = everything()

    def moved(before: list[Samples], after: list[Samples], name: str, **labels: str) -> float:
        return (sum(total(s, name, **labels) for s in after)
                - sum(total(s, name, **labels) for s in before))

    assert moved(meta_before, meta_after, "dfs_rpc_server_handled_total",
                 method="dfs.v1.Meta/Commit", code="OK") >= 1
    assert moved(meta_before, meta_after, "dfs_paxos_commands_applied_total") >= 3
    assert moved(data_before, data_after, "dfs_rpc_server_handled_total",
                 method="dfs.v1.Data/WriteChunk") >= 1
    assert moved(data_before, data_after, "dfs_data_chunks") >= 1
    assert moved(data_before, data_after, "dfs_data_bytes_total",
                 direction="written") >= len(payload)
    assert moved(meta_before, meta_after, "dfs_paxos_commit_seconds_count") >= 1
    assert total(mount_after, "dfs_client_cache_bytes_total") >= total(
        mount_before, "dfs_client_cache_bytes_total")
    assert total(mount_after, "dfs_fuse_op_seconds_count", op="write") > total(
        mount_before, "dfs_fuse_op_seconds_count", op="write")
    assert total(mount_after, "process_resident_memory_bytes") > 0


def test_root_squash_mount_makes_root_nobody(cluster: LocalCluster, tmp_path: Path) -> None:
    (cluster.mount / "shared").mkdir()
    os.chmod(cluster.mount / "shared", 0o777)
    (cluster.mount / "private").mkdir(mode=0o755)
    squashed = tmp_path / "squashed"
    squashed.mkdir()
    env = {**os.environ, RUN_TOKEN_ENV: RUN_TOKEN}
    log = tmp_path / "squashed.log"
    with log.open("wb") as log_file:
        mount = subprocess.Popen([*DFS, "mount", "-o", "root_squash", "--cluster",
                                  str(cluster.cluster_file), str(squashed)], env=env,
                                 stdout=subprocess.DEVNULL, stderr=log_file)
    try:
        deadline = time.monotonic() + 60
        while not os.path.ismount(squashed):
            assert mount.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (squashed / "shared" / "by-root").write_text("squashed")
        made = os.stat(squashed / "shared" / "by-root")
        assert (made.st_uid, made.st_gid) == (NOBODY, NOBODY)
        with pytest.raises(PermissionError):
            (squashed / "private" / "by-root").write_text("refused")
        (cluster.mount / "private" / "by-root").write_text("the unsquashed mount may")
    finally:
        cluster.dfs("umount", str(squashed))
        try:
            mount.wait(timeout=120)
        except subprocess.TimeoutExpired:
            mount.kill()
            raise AssertionError(f"mount did not exit: {log.read_text()[-2000:]}") from None


COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    # words, a phrase of the human form, a key of the --json form
    (("status",), "health: OK", "health"),
    (("meta", "status"), "leader", "members"),
    (("data", "list"), "ring epoch", "servers"),
    (("ring", "show"), "epoch", "members"),
    (("ring", "plan", "weight", "1", "2"), "move", "chunks_moved"),
    (("sessions",), "mount:", "sessions"),
    (("scrub", "start", "100", "--wait", "60"), "scrub started", "servers"),
    (("scrub", "status"), "passes", "servers"),
    (("rebalance", "status"), "ring epoch", "settled"),
    (("rebalance", "--dry-run"), "the next pass", "copies_to_drop"),
    (("rebalance", "--rate", "30"), "pass started", "servers"),
    (("fsck",), "no problems found", "findings"),
]


@pytest.mark.parametrize("words, phrase, key", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_admin_commands_in_both_forms(
    cluster: LocalCluster, words: tuple[str, ...], phrase: str, key: str
) -> None:
    _, human = admin(cluster, *words)
    assert phrase in human, human
    _, parsed = admin_json(cluster, *words)
    assert key in parsed, parsed


def chunk_files(cluster: LocalCluster, chunk_id: int) -> list[Path]:
    return [path for d in cluster.record()["data"]  # type: ignore[attr-defined]
            if (path := _chunk_path(Path(d["data_dir"]) / "store", chunk_id)).exists()]


async def plant_chunks(cluster: LocalCluster) -> dict[str, int]:
    """Two files written through the client library, and an orphan: a chunk uploaded
    by a session that closes without committing it."""
    secret = secret_of(cluster)
    meta = MetaClient(meta_addrs(cluster), secret, RetryPolicy(deadline_s=30), client_name="t")
    await meta.open()
    files = FileData(meta, secret, call_timeout_s=10.0)
    _, (missing,) = await write_file(meta, files, "fsck-missing", 1, 200_000)
    _, (corrupt,) = await write_file(meta, files, "fsck-corrupt", 2, 200_000)
    orphan = (await files.write_chunk(os.urandom(50_000))).chunk_id
    await files.close()
    await meta.close()
    return {"missing": missing, "corrupt": corrupt, "orphan": orphan}


def snapshot_every_replica(cluster: LocalCluster, at_least: int) -> None:
    secret = secret_of(cluster)
    for addr in meta_addrs(cluster):
        with sync_channel(addr, secret) as channel:
            stub = admin_pb2_grpc.AdminStub(channel)
            for _ in range(100):
                stub.MetaSnapshot(common_pb2.Empty(), timeout=5)
                if stub.Status(admin_pb2.StatusRequest(), timeout=5).meta.snapshot_slot >= (
                        at_least):
                    break
                asyncio.run(asyncio.sleep(0.1))
            else:
                raise AssertionError(f"{addr} took no snapshot at or past slot {at_least}")


def raise_nlink_offline(cluster: LocalCluster, ino: int, by: int) -> None:
    """Damage every replica's newest snapshot the same way, with the cluster down."""
    for member in cluster.record()["meta"]:  # type: ignore[attr-defined]
        directory = Path(member["data_dir"]) / SNAPSHOT_DIR
        path = sorted(directory.glob("*" + snapshot_files.SUFFIX))[-1]
        snap = snapshot_files.decode(path.read_bytes(), str(path))
        machine = MetaStateMachine(session_timeout_ns=30 * 10**9)
        machine.restore(snap.payload)
        machine.namespace.state.inodes[ino].nlink += by
        damaged = snapshot_files.encode(snap.slot, snap.config, machine.snapshot())
        path.with_suffix(".damaged").write_bytes(damaged)
        path.with_suffix(".damaged").rename(path)


def findings(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(f["problem"], int(f["id"])): f for f in report["findings"]}


@pytest.mark.timeout(240)
def test_fsck_finds_planted_damage_and_repairs_what_it_can(cluster: LocalCluster) -> None:
    chunks = asyncio.run(plant_chunks(cluster))
    victim = cluster.mount / "fsck-links"
    victim.write_text("linked")
    os.link(victim, cluster.mount / "fsck-links-2")
    ino = victim.stat().st_ino
    for path in chunk_files(cluster, chunks["missing"]):
        path.unlink()
    holder = chunk_files(cluster, chunks["corrupt"])[0]
    flip_byte_in_copy(holder.parents[4], chunks["corrupt"])
    code, status = admin_json(cluster, "meta", "status")
    snapshot_every_replica(cluster, max(m["applied"] for m in status["members"]))
    assert cluster.down().returncode == 0
    raise_nlink_offline(cluster, ino, by=3)
    cluster.up()

    code, report = admin_json(cluster, "fsck", "--verify")
    assert code == 1
    found = findings(report)
    expected = {("missing chunk", chunks["missing"]), ("corrupt copy", chunks["corrupt"]),
                ("orphan chunk", chunks["orphan"]), ("link count mismatch", ino)}
    assert expected <= found.keys(), report
    assert not found[("missing chunk", chunks["missing"])]["repairable"]
    assert "fsck-missing" in found[("missing chunk", chunks["missing"])]["detail"]

    code, repaired = admin_json(cluster, "fsck", "--repair")
    fixed = findings(repaired)
    for key in (("orphan chunk", chunks["orphan"]), ("link count mismatch", ino)):
        assert fixed[key]["repaired"], fixed[key]
    assert code == 1  # the missing chunk stays reported: nothing can bring it back

    # The verifying run marked the corrupt copy; the holder replaces it from a good one.
    deadline = time.monotonic() + 60
    while True:
        code, after = admin_json(cluster, "fsck", "--verify")
        left = findings(after)
        if ("corrupt copy", chunks["corrupt"]) not in left or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert ("corrupt copy", chunks["corrupt"]) not in left, after
    assert ("under-replicated chunk", chunks["corrupt"]) not in left, after
    assert ("link count mismatch", ino) not in left
    assert ("orphan chunk", chunks["orphan"]) not in left
    assert ("missing chunk", chunks["missing"]) in left
    assert os.stat(victim).st_nlink == 2
    assert chunk_files(cluster, chunks["orphan"]) == []
    # The human form says the same.
    code, text = admin(cluster, "fsck")
    assert code == 1 and "missing chunk" in text and "not repairable" in text
