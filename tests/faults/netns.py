"""Network namespaces for the fault suite: one per server, veth pairs to a bridge the
suite makes, private 10.x addresses used only inside, and the partitions and lossy
links the nemesis sets with nftables in the namespaces.

Everything is named with the run's prefix and written to a ledger file BEFORE it is
created, so `cleanup_leftovers` (scripts/faults.py --cleanup) removes what a crashed
or killed run left: processes, mounts, namespaces, links. Deleting a namespace takes
its veth end and nft tables with it; the bridge and the processes need their own step.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import signal
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.faults.commands import run_command

LEDGER_DIR = Path("/run/dfs-faults")
PREFIX_STEM = "dfsf"  # every name the suite creates starts with this
NFT_TABLE = "dfsfault"
CLIENT = "client"  # the root namespace's end of the bridge (mount, KV clients)


def run(*argv: str, check: bool = True,
        input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    done = run_command(list(argv), input_text)  # not forked here: see tests/faults/commands.py
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done


def nft(namespace: str, *words: str) -> None:
    run("ip", "netns", "exec", namespace, "nft", *words)


def nft_batch(namespace: str, commands: list[str]) -> None:
    """Several nft commands in one process (each process costs more than its rules)."""
    run("ip", "netns", "exec", namespace, "nft", "-f", "-",
        input_text="\n".join(commands) + "\n")


@dataclass
class Ledger:
    """What one run created, saved on every change (the cleanup's only source)."""

    prefix: str
    owner_pid: int
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return LEDGER_DIR / f"{self.prefix}.json"

    def save(self) -> None:
        LEDGER_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.rename(self.path)

    def add(self, kind: str, item: str | int) -> None:
        getattr(self, kind).append(item)
        self.save()

    @classmethod
    def load(cls, path: Path) -> Ledger:
        return cls(**json.loads(path.read_text()))


def _pid_is_ours(pid: int, prefix: str) -> bool:
    """Guards against pid reuse: our servers carry the prefix in their command line."""
    try:
        return prefix.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def remove_everything(ledger: Ledger) -> list[str]:
    """Undo what `ledger` records; returns what was removed, for the report."""
    removed = []
    for pid in ledger.pids:
        if _pid_is_ours(pid, ledger.prefix):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGCONT)
                os.killpg(pid, signal.SIGKILL)
            removed.append(f"process {pid}")
    mounted = Path("/proc/self/mountinfo").read_text()
    for mount in ledger.mounts:
        if f" {mount} " in mounted:
            run("fusermount3", "-uz", mount, check=False)
            removed.append(f"mount {mount}")
    existing = run("ip", "netns", "list", check=False).stdout
    for namespace in ledger.namespaces:
        if namespace in existing.split():
            run("ip", "netns", "del", namespace, check=False)
            removed.append(f"netns {namespace}")
    for link in ledger.links:
        if run("ip", "link", "show", link, check=False).returncode == 0:
            run("ip", "link", "del", link, check=False)
            removed.append(f"link {link}")
    ledger.path.unlink(missing_ok=True)
    return removed


def cleanup_leftovers(include_running: bool = False) -> list[str]:
    """Remove what every recorded run left behind, except runs still going
    (their owner is alive) unless `include_running`."""
    removed = []
    for path in sorted(LEDGER_DIR.glob(f"{PREFIX_STEM}*.json")):
        ledger = Ledger.load(path)
        if not include_running and _alive(ledger.owner_pid):
            continue
        removed += remove_everything(ledger)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _free_subnet(rng: random.SystemRandom) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no address or route of this machine touches."""
    used = run("ip", "-4", "route", "show", "table", "all").stdout + run(
        "ip", "-4", "addr").stdout
    for _ in range(100):
        net = ipaddress.IPv4Network(f"10.{rng.randrange(100, 250)}.{rng.randrange(1, 250)}.0/24")
        if f"10.{net.network_address.packed[1]}.{net.network_address.packed[2]}." not in used:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the fault suite")


class Network:
    """A bridge, and a namespace per host with one veth to it. Hosts are named by
    the caller ("meta1", "data2"); the root namespace's end is CLIENT."""

    def __init__(self) -> None:
        # Not the run's seeded generator: two runs of one seed must not share names.
        rng = random.SystemRandom()
        self.prefix = f"{PREFIX_STEM}{rng.randrange(16**4):04x}"
        self.ledger = Ledger(self.prefix, os.getpid())
        self.subnet = _free_subnet(rng)
        hosts = self.subnet.hosts()
        self.bridge = f"{self.prefix}br"
        self.addrs: dict[str, str] = {CLIENT: str(next(hosts))}
        self._free_hosts = hosts
        self.namespaces: dict[str, str] = {}
        self._ruled: set[str] = set()  # hosts whose input chain holds fault rules
        self.ledger.add("links", self.bridge)
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.addrs[CLIENT]}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")

    def add_host(self, name: str) -> str:
        """A namespace for `name`, joined to the bridge; returns its address."""
        index = len(self.namespaces)
        namespace = f"{self.prefix}-{name}"
        outer, inner = f"{self.prefix}h{index}", f"{self.prefix}n{index}"
        self.ledger.add("namespaces", namespace)
        self.ledger.add("links", outer)
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        run("ip", "link", "set", inner, "netns", namespace)
        run("ip", "link", "set", outer, "master", self.bridge)
        run("ip", "link", "set", outer, "up")
        addr = str(next(self._free_hosts))
        run("ip", "-n", namespace, "addr", "add", f"{addr}/24", "dev", inner)
        run("ip", "-n", namespace, "link", "set", inner, "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        nft(namespace, "add", "table", "inet", NFT_TABLE)
        nft(namespace, "add", "chain", "inet", NFT_TABLE, "input",
            "{ type filter hook input priority 0; policy accept; }")
        self.namespaces[name] = namespace
        self.addrs[name] = addr
        return addr

    def exec_prefix(self, name: str) -> list[str]:
        """Run a command inside `name`'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[name]]

    # -- faults (rules live in the receiver's namespace: one-way by construction)

    def _add_input_rules(self, target: str, rules: list[str]) -> None:
        self._ruled.add(target)
        nft_batch(self.namespaces[target],
                  [f"add rule inet {NFT_TABLE} input {rule}" for rule in rules])

    def drop(self, sources: list[str], target: str) -> None:
        """Packets from `sources` no longer reach `target`."""
        self._add_input_rules(target, [f"ip saddr {self.addrs[s]} drop" for s in sources])

    def partition(self, side: list[str], other: list[str]) -> None:
        for host in side:
            self.drop(other, host)
        for host in other:
            self.drop(side, host)

    def lossy(self, target: str, percent: int) -> None:
        """`target` loses `percent` % of what it receives (tc netem is absent from
        some kernels; nft's random numbers are not)."""
        self._add_input_rules(target, [f"numgen random mod 100 lt {percent} drop"])

    def heal(self) -> None:
        for host in sorted(self._ruled):
            nft(self.namespaces[host], "flush", "chain", "inet", NFT_TABLE, "input")
        self._ruled.clear()

    def close(self) -> list[str]:
        return remove_everything(self.ledger)
