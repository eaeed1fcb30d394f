"""The `dfs` command skeleton: help for every subcommand, clear failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dfs.cli import build_parser, main
from dfs.config import ConfigError, apply_config, require

SUBCOMMANDS = ["init", "meta", "data", "mount", "umount", "up", "down", "admin"]


def run_dfs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dfs.cli", *args], capture_output=True,
                          text=True, timeout=60)


def test_every_subcommand_has_help() -> None:
    _, commands = build_parser()
    assert sorted(commands) == sorted(SUBCOMMANDS)
    for name, parser in commands.items():
        assert parser.description, f"{name} --help says nothing"


def test_help_runs_as_a_process() -> None:
    done = run_dfs("meta", "--help")
    assert done.returncode == 0 and "--data-dir" in done.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["meta"], "missing --id, --listen, --data-dir"),
        (["meta", "--id", "1", "--listen", "127.0.0.1:1", "--data-dir", "x"], "--secret FILE"),
        (["admin"], "what to do?"),
        (["admin", "meta", "status"], "give --meta"),
        (["mount", "/nonexistent-mount-point"], "is not a directory"),
        (["down", "--dir", "/nonexistent-cluster-dir"], "no cluster at"),
        (["data"], "missing --id"),
    ],
)
def test_incomplete_commands_fail_in_one_line(argv: list[str], message: str) -> None:
    done = run_dfs(*argv)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_usage_error_is_one_line() -> None:
    done = run_dfs("nosuch")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "invalid choice" in done.stderr


def test_init_then_refuse_second_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "secret").exists()
    assert main(["init", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_config_file_fills_flags_and_command_line_wins(tmp_path: Path) -> None:
    config = tmp_path / "meta.toml"
    config.write_text('id = 3\nlisten = "127.0.0.1:7000"\ndata-dir = "/var/x"\n')
    parser, commands = build_parser()
    argv = ["meta", "--config", str(config), "--listen", "127.0.0.1:9000"]
    args = apply_config(commands["meta"], parser.parse_args(argv), argv)
    assert args.id == 3
    assert args.listen == "127.0.0.1:9000"
    assert args.data_dir == "/var/x"
    require(args, "id", "listen", "data_dir")
    with pytest.raises(ConfigError, match="--peers"):
        require(args, "peers")


def test_config_file_unknown_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("lisen = 1\n")
    assert main(["meta", "--config", str(config)]) == 2
    assert "unknown key 'lisen'" in capsys.readouterr().err


def test_config_file_bad_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('id = "three"\n')
    assert main(["meta", "--config", str(config)]) == 2
    assert "bad value for 'id'" in capsys.readouterr().err
