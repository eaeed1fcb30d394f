"""A server's disk on the lossy storage layer: the `tests.faults.lossyfs` process
behind one mount point, and its commands (power loss, sync, disk full)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from dfs.localcluster import is_mounted

READY_S = 30.0
COMMAND_S = 300.0  # generous: the machine may be loaded
WAKE_AFTER_S = 1.0  # no answer this long: wake the layer's loop (see _wake)
STOP_S = 20.0


class LossyDisk:
    """Files written at `mountpoint` live in `backing`; unsynced ones die in a power loss."""

    def __init__(self, backing: Path, mountpoint: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.control = backing / "control.sock"
        self.log_path = backing.with_name(f"{backing.name}.lossyfs.log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> LossyDisk:
        self.backing.mkdir(parents=True, exist_ok=True)
        self.control.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tests.faults.lossyfs", str(self.backing),
                str(self.mountpoint), str(self.control)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, start_new_session=True,
                                         cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + READY_S
        while not (is_mounted(self.mountpoint) and self._answers()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lossy disk at {self.mountpoint} did not come up:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            self.command("status")
        except OSError:  # not listening yet
            return False
        return True

    def command(self, words: str) -> str:
        """Send one command; its answer after `ok` (raises on `error`)."""
        deadline = time.monotonic() + COMMAND_S
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(WAKE_AFTER_S)
            conn.connect(str(self.control))
            conn.sendall(words.encode())
            conn.shutdown(socket.SHUT_WR)
            reply = b""
            wakes = 0
            while True:
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
                    self._wake(wakes)
                    wakes += 1
                    continue
                if not chunk:
                    break
                reply += chunk
        text = reply.decode().strip()
        if not text.startswith("ok"):
            raise RuntimeError(f"lossy disk {self.mountpoint}: {words}: {text or 'no answer'}")
        return text[2:].strip()

    def _wake(self, attempt: int) -> None:
        """The layer's one request worker can sit in a read of /dev/fuse whose request
        the kernel withdrew (its caller was killed, as every server is in a power
        outage): nothing else then wakes its loop, which also answers the control
        socket. A lookup of a name never used before always reaches the layer."""
        probe = self.mountpoint / f".wake-{os.getpid()}-{attempt}"
        threading.Thread(target=os.path.lexists, args=(probe,), daemon=True).start()

    def power_loss(self) -> str:
        """Drop what was not fsynced. Only while nothing runs on the disk: a process
        still writing would keep going on the far side of the cut."""
        return self.command("power-loss")

    def sync(self) -> str:
        return self.command("sync")

    def set_full(self, full: bool) -> None:
        self.command("full on" if full else "full off")

    def stop(self) -> None:
        """Unmount (SIGTERM: the process unmounts itself), SIGKILL and a lazy unmount if
        it will not."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_S)
        if is_mounted(self.mountpoint):
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True,
                           timeout=STOP_S)
