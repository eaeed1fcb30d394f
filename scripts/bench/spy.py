"""py-spy recordings of running dfs processes, and a top-N text summary of each.

A recording samples one process from outside (`py-spy record --pid`, non-blocking, so
the process is not paused) until it is stopped with SIGINT, and writes collapsed
stacks ("frame;frame;frame count" per line). The summary turns them into what a
reader needs to say what bounds a figure: how busy the process was (sampled
non-idle threads per second of wall time, over the sampling rate) and the
functions that held those samples, by own time and by inclusive time.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 100
STOP_TIMEOUT_S = 30.0
TOP_N = 25
# Leaf functions where a sampled thread is waiting, not working: event loops polling
# (trio's and asyncio's), idle executor workers, and native threads (gRPC's poller)
# whose only Python frame is Thread.run. py-spy's own idle detection (--nonblocking,
# on a loaded machine) counts many of these as active.
WAIT_LEAVES = frozenset({
    "EpollIOManager.get_events",
    "EpollIOManager._epoll_wait",
    "EpollSelector.select",
    "_worker",
    "Thread.run",
    "Condition.wait",
    "Event.wait",
})


def find_py_spy() -> str | None:
    """py-spy on PATH, else beside this interpreter (a venv's bin)."""
    beside = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


class Recording:
    """`py-spy record` of one pid into `raw_path`, and optionally a flamegraph SVG."""

    def __init__(self, py_spy: str, pid: int, raw_path: Path, svg_path: Path | None) -> None:
        self.raw_path = raw_path
        self.started = time.monotonic()
        self.elapsed_s = 0.0
        outputs = [("raw", raw_path)] + ([("flamegraph", svg_path)] if svg_path else [])
        self.procs = [
            subprocess.Popen(
                [py_spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking",
                 "--function", "--format", fmt, "--output", str(path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            for fmt, path in outputs
        ]

    def stop(self) -> list[str]:
        """SIGINT makes py-spy write its file; returns the complaints of failed ones."""
        self.elapsed_s = time.monotonic() - self.started
        problems = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                _, err = proc.communicate(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode != 0 and not self.raw_path.exists():
                problems.append(err.decode(errors="replace").strip().splitlines()[-1:][0]
                                if err.strip() else f"py-spy exited {proc.returncode}")
        return problems


@dataclass(frozen=True)
class Profile:
    """Collapsed stacks of one recording, counted."""

    samples: int
    waiting: int  # of `samples`, those whose leaf is one of WAIT_LEAVES
    own: Counter[str]
    inclusive: Counter[str]


def read_collapsed(path: Path) -> Profile:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = waiting = 0
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            samples += count
            own[frames[-1]] += count
            if frames[-1].split(" (", 1)[0] in WAIT_LEAVES:
                waiting += count
            for frame in set(frames):
                inclusive[frame] += count
    return Profile(samples, waiting, own, inclusive)


def summary(name: str, profile: Profile, elapsed_s: float, top_n: int = TOP_N) -> str:
    """A plain-text summary: how busy, then the top frames by own and inclusive samples."""
    expected = RATE_HZ * elapsed_s
    working = profile.samples - profile.waiting
    busy = working / expected if expected > 0 else 0.0
    lines = [
        f"== {name}: {busy:.2f} threads working on average over {elapsed_s:.1f} s "
        f"(1.00 = one thread on a CPU all the time): {profile.samples} samples at {RATE_HZ} Hz, "
        f"{profile.waiting} of them waiting in a poll or an idle worker",
    ]
    if not profile.samples:
        return "\n".join(lines)
    for title, counts in (("own time", profile.own), ("inclusive time", profile.inclusive)):
        lines.append(f"-- top {top_n} by {title} (% of samples)")
        for frame, count in counts.most_common(top_n):
            lines.append(f"{100 * count / profile.samples:6.1f}%  {frame}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """spy.py RAW SECONDS [NAME]: the summary of a recording made earlier."""
    if len(argv) not in (2, 3):
        print("usage: spy.py RAW_COLLAPSED_STACKS SECONDS [NAME]", file=sys.stderr)
        return 2
    raw = Path(argv[0])
    print(summary(argv[2] if len(argv) == 3 else raw.stem, read_collapsed(raw), float(argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
