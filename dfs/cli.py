"""The `dfs` command: one entry point for servers, the mount, the local cluster and admin.

Each subcommand parses its flags (also from `--config FILE.toml` for servers)
and hands over to the module that owns the work; this file holds no policy.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from dfs import __version__
from dfs.auth import SecretError, init_cluster_dir
from dfs.config import ConfigError, apply_config

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"dfs: {message}", file=sys.stderr)
    return code


def not_yet(what: str) -> Command:
    def run(args: argparse.Namespace) -> int:
        return fail(f"{args.command}: not available yet ({what})")

    return run


def cmd_init(args: argparse.Namespace) -> int:
    try:
        path, secret = init_cluster_dir(Path(args.dir))
    except SecretError as err:
        return fail(f"init: {err}")
    except OSError as err:
        return fail(f"init: cannot create {args.dir}: {err.strerror}")
    print(f"cluster {secret.cluster_id}: secret written to {path} (mode 0600)")
    return EXIT_OK


def cmd_meta(args: argparse.Namespace) -> int:
    from dfs.meta.server import run

    return run(args)


def cmd_data(args: argparse.Namespace) -> int:
    try:
        server = importlib.import_module("dfs.data.server")
    except ModuleNotFoundError:
        return fail("data: not available yet (the data server arrives with its issue)")
    code: int = server.run(args)
    return code


def cmd_mount(args: argparse.Namespace) -> int:
    from dfs.fuse.mount import run

    return run(args)


def cmd_umount(args: argparse.Namespace) -> int:
    from dfs.fuse.mount import umount

    return umount(args.mountpoint)


def cmd_up(args: argparse.Namespace) -> int:
    from dfs.localcluster import up

    return up(args)


def cmd_down(args: argparse.Namespace) -> int:
    from dfs.localcluster import down

    return down(args)


def cmd_admin(args: argparse.Namespace) -> int:
    from dfs.admin.cli import run

    return run(args)


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", metavar="PEM", help="this process's certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="its private key (mode 0600)")
    p.add_argument("--tls-ca", metavar="PEM", help="the cluster CA that signs every certificate")


def add_server_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="read any of these flags from a TOML file")
    p.add_argument("--secret", metavar="FILE", help="cluster secret file made by `dfs init`")
    p.add_argument("--insecure", action="store_true",
                   help="serve without a secret (tests only: anyone can call)")
    add_tls_flags(p)
    p.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")


def build_parser() -> tuple[Parser, dict[str, Parser]]:
    """The `dfs` parser and its subcommand parsers by name."""
    parser = Parser(prog="dfs", description="dfs: a distributed file system. Metadata servers "
                    "replicate the namespace through Multi-Paxos, data servers hold chunks placed "
                    "by consistent hashing, and a FUSE mount shows it all as a POSIX directory.")
    parser.add_argument("--version", action="version", version=f"dfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("init", help="create a cluster id and secret",
                       description="Write DIR/secret (mode 0600): a new cluster id and a "
                       "random secret that servers, mounts and the admin tool take with --secret.")
    p.add_argument("--dir", required=True, help="directory for the secret file")
    p.set_defaults(run=cmd_init)

    p = sub.add_parser("meta", help="run a metadata server",
                       description="Run one metadata replica in the foreground: a member of the "
                       "Multi-Paxos group that replicates the namespace.")
    p.add_argument("--id", type=int, help="replica id, unique in the group")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on")
    p.add_argument("--peers", metavar="ID=HOST:PORT,...",
                   help="initial members; only used to bootstrap an empty data dir")
    p.add_argument("--join", metavar="HOST:PORT", help="join a running group through this member")
    p.add_argument("--data-dir", metavar="DIR", help="WAL and snapshots live here")
    p.add_argument("--session-timeout-ms", type=int, default=30_000,
                   help="client sessions expire after this long without a keepalive "
                   "(must be the same on every replica)")
    p.add_argument("--data-out-after-s", type=float,
                   help="a data server silent this long is taken out of the ring and its "
                   "chunks repaired elsewhere (default 300)")
    p.add_argument("--snapshot-every", type=int, default=10_000,
                   help="take a snapshot every this many chosen slots (the WAL before it goes)")
    p.add_argument("--wal-segment-bytes", type=int, default=64 * 1024 * 1024,
                   help="size at which the WAL starts a new segment file")
    p.add_argument("--snapshot-send-rate", type=int, default=0, metavar="BYTES_PER_S",
                   help="cap on a snapshot transfer to a lagging replica (0: none)")
    add_server_common(p)
    p.set_defaults(run=cmd_meta)

    p = sub.add_parser("data", help="run a data server",
                       description="Run one data server in the foreground: stores chunks placed "
                       "on it by the consistent-hash ring.")
    p.add_argument("--id", type=int, help="data server id, unique in the cluster")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on")
    p.add_argument("--meta", metavar="HOST:PORT,...", help="metadata servers")
    p.add_argument("--data-dir", metavar="DIR", help="chunks live here")
    p.add_argument("--weight", type=int, default=1,
                   help="relative capacity (virtual nodes are proportional to it)")
    p.add_argument("--domain", default="", help="failure-domain label (rack, host)")
    add_server_common(p)
    p.add_argument("--capacity", type=int, default=0,
                   help="bytes this server may fill (default: its filesystem's size)")
    add_data_lifecycle_flags(p)
    p.set_defaults(run=cmd_data)

    p = sub.add_parser("mount", help="mount the cluster as a local directory",
                       description="Mount the cluster at MOUNTPOINT through FUSE, in the "
                       "foreground; SIGTERM or `dfs umount` flushes and unmounts.")
    p.add_argument("mountpoint", help="an empty directory")
    p.add_argument("--meta", metavar="HOST:PORT,...", help="metadata servers")
    p.add_argument("--cluster", metavar="DIR/cluster.json", help="a local cluster made by `dfs up`")
    p.add_argument("-o", dest="options", action="append", default=[],
                   help="mount options: allow_other, root_squash, attr_timeout=S, "
                   "entry_timeout=S, negative_timeout=S, deadline=S (per request), cache sizes "
                   "(docs/posix.md), and any FUSE option")
    add_server_common(p)
    p.set_defaults(run=cmd_mount)

    p = sub.add_parser("umount", help="flush and unmount a dfs mount",
                       description="Flush buffered writes and unmount MOUNTPOINT.")
    p.add_argument("mountpoint")
    p.set_defaults(run=cmd_umount)

    p = sub.add_parser("up", help="start a local cluster and mount it",
                       description="Start a local cluster (default 3 metadata, 4 data servers) "
                       "with its state under DIR, and mount it at DIR/mnt.")
    p.add_argument("--dir", default=".dfs", help="cluster state directory")
    p.add_argument("--meta", type=int, default=3, help="metadata servers")
    p.add_argument("--data", type=int, default=4, help="data servers")
    p.add_argument("--replicas", type=int, default=3, help="copies of each chunk")
    p.add_argument("--mount", metavar="PATH", help="mount point (default DIR/mnt)")
    p.add_argument("--base-port", type=int, default=0, help="first port (default: any free)")
    p.add_argument("--mount-options", metavar="OPTS", default="",
                   help="options for the mount, as dfs mount -o (e.g. allow_other)")
    p.add_argument("--tls", action="store_true",
                   help="mutual TLS between every process (a local CA is made in DIR/tls)")
    p.add_argument("--metrics", action="store_true",
                   help="every process serves Prometheus metrics (addresses in cluster.json)")
    p.set_defaults(run=cmd_up)

    p = sub.add_parser("down", help="stop a local cluster",
                       description="Unmount and stop every process of a local cluster, "
                       "keeping its data.")
    p.add_argument("--dir", default=".dfs", help="cluster state directory")
    p.set_defaults(run=cmd_down)

    p = sub.add_parser("admin", help="inspect and operate a cluster",
                       description="Admin client: status, meta, data, ring, fsck, scrub, "
                       "rebalance and sessions, over the admin gRPC service.")
    p.add_argument("--meta", metavar="HOST:PORT,...", help="metadata servers")
    p.add_argument("--cluster", metavar="DIR/cluster.json", help="a local cluster made by `dfs up`")
    p.add_argument("--secret", metavar="FILE", help="cluster secret file")
    add_tls_flags(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("action", nargs=argparse.REMAINDER, help="what to do")
    p.set_defaults(run=cmd_admin)
    return parser, dict(sub.choices)


def add_data_lifecycle_flags(p: argparse.ArgumentParser) -> None:
    """Rates and periods of a data server's scrub, repair and sweep (unset = default)."""
    p.add_argument("--scrub-rate-mbps", dest="scrub_rate_mbps", type=float,
                   help="bytes a scrub verifies per second, in MB (default 4)")
    p.add_argument("--scrub-rest-s", dest="scrub_rest_s", type=float,
                   help="pause between full scrub passes (default 3600)")
    p.add_argument("--repair-rate-mbps", dest="repair_rate_mbps", type=float,
                   help="bytes repair and rebalance push per second, in MB (default 20)")
    p.add_argument("--pass-interval-s", dest="pass_interval_s", type=float,
                   help="pause between anti-entropy passes (default 10)")
    p.add_argument("--sweep-interval-s", dest="sweep_interval_s", type=float,
                   help="pause between orphan sweeps (default 60)")
    p.add_argument("--sweep-grace-s", dest="sweep_grace_s", type=float,
                   help="an unreferenced chunk younger than this is kept (default 3600)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args = apply_config(commands[args.command], args, argv)
    except ConfigError as err:
        return fail(f"{args.command}: {err}")
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
