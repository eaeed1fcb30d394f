"""A full data filesystem: 3 `dfs meta` + 4 `dfs data` processes whose data dirs share
one small tmpfs mounted in the test's tmp dir. Writes fail with ENOSPC once it is
full, every earlier file reads back byte-identical, no upload leaves a temp file,
and the data servers still exit 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
from pathlib import Path

import pytest

from dfs.client.data import FileData
from dfs.client.meta import MetaClient
from dfs.client.retry import RetryPolicy
from dfs.rpc import common_pb2
from tests.support.data_cluster import make_data_cluster, stop_all_at_once
from tests.support.meta_cluster import make_meta_cluster
from tests.support.procs import ProcessSet

ROOT = common_pb2.Caller(uid=0, gid=0)
ROOT_INO = 1
MIB = 1024 * 1024
TMPFS_SIZE = "40m"  # room for about three 4 MiB files at three copies each


def mount_tmpfs(path: Path) -> None:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "dfs-test", str(path)],
        capture_output=True, text=True, timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


def unmount(path: Path) -> None:
    done = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.mark.timeout(120)
def test_full_data_filesystem_gives_enospc_and_keeps_earlier_files(
    procs: ProcessSet, secret_file: Path
) -> None:
    small = procs.base_dir / "small"
    mount_tmpfs(small)
    try:
        meta = make_meta_cluster(procs, secret_file)
        meta.start_all()
        data = make_data_cluster(meta, base_dir=small)
        data.start_all()

        async def body() -> list[tuple[int, bytes]]:
            client = MetaClient(meta.addr_list, meta.secret,
                                RetryPolicy(deadline_s=30, attempt_timeout_s=2.0))
            await client.open()
            files = FileData(client, meta.secret, call_timeout_s=10.0)
            written: list[tuple[int, bytes]] = []
            try:
                with pytest.raises(OSError) as raised:
                    for index in range(20):
                        content = random.Random(index).randbytes(4 * MIB)
                        attr = await client.create(ROOT, ROOT_INO, f"f{index}".encode(), 0o644)
                        await files.write(ROOT, attr.ino, 0, content)
                        written.append((attr.ino, content))
                assert raised.value.errno == errno.ENOSPC
                assert written, "the filesystem filled before the first file"
                for ino, content in written:
                    assert await files.read(ROOT, ino, 0, len(content)) == content
            finally:
                await files.close()
                await client.close()
            return written

        asyncio.run(body())
        for server_id, data_dir in data.data_dirs.items():
            assert os.listdir(data_dir / "store" / "tmp") == [], server_id
        exit_codes = stop_all_at_once(procs)
        for server_id in data.servers:
            assert exit_codes[f"data{server_id}"] == 0, f"data{server_id} exited non-zero"
    finally:
        stop_all_at_once(procs)  # nothing may hold files on the tmpfs when it goes
        unmount(small)
