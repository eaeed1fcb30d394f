"""The fault suite's network: namespaces joined by a bridge, one-way drops that heal,
and nothing left behind, also when the run that made them is killed."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.netns import CLIENT, LEDGER_DIR, Ledger, Network, cleanup_leftovers, run

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def needs_root() -> None:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("network namespaces and nftables need root")


def exists(prefix: str) -> list[str]:
    names = run("ip", "netns", "list").stdout + run("ip", "-o", "link").stdout
    return [word for word in names.split() if word.startswith(prefix)]


def can_connect(addr: str, port: int) -> bool:
    try:
        socket.create_connection((addr, port), timeout=1.0).close()
        return True
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_drop_and_heal_then_everything_removed() -> None:
    network = Network()
    try:
        addr = network.add_host("a")
        listener = subprocess.Popen([*network.exec_prefix("a"), sys.executable, "-c",
                                     "import socket,time\n"
                                     f"s=socket.create_server(('{addr}', 7999))\n"
                                     "while True: s.accept()[0].close()"])
        try:
            deadline = time.monotonic() + 20
            while not can_connect(addr, 7999):
                assert time.monotonic() < deadline, "listener in the namespace never answered"
            network.drop([CLIENT], "a")
            assert not can_connect(addr, 7999)
            network.heal()
            assert can_connect(addr, 7999)
        finally:
            listener.kill()
            listener.wait()
        assert exists(network.prefix)
    finally:
        network.close()
    assert exists(network.prefix) == []
    assert not network.ledger.path.exists()


@pytest.mark.timeout(60)
def test_a_killed_run_is_cleaned_up_from_its_ledger() -> None:
    script = ("from tests.faults.netns import Network\n"
              "import time\n"
              "n = Network(); n.add_host('x'); print(n.prefix, flush=True); time.sleep(600)")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             cwd=REPO_ROOT, text=True)
    assert owner.stdout is not None
    prefix = owner.stdout.readline().strip()
    try:
        cleanup_leftovers()  # its owner still runs: nothing of it may go
        assert exists(prefix)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        ledger = Ledger.load(LEDGER_DIR / f"{prefix}.json")
        assert ledger.namespaces and ledger.links
        removed = cleanup_leftovers()
        assert f"netns {prefix}-x" in removed
        assert exists(prefix) == []
    finally:
        owner.kill()
        owner.wait()
        cleanup_leftovers()
