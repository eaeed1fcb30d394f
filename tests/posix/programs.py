"""Real programs on a directory of a dfs mount, as checks a test calls: git (init, add,
commit, status, clone, fsck), sqlite3 in WAL and rollback-journal modes checked with
PRAGMA integrity_check, `tar -x` of a source tree compared with `diff -r`, and
`python -m compileall`. Each raises AssertionError when the program or its result
is wrong."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE_DIRS = ["dfs/client", "dfs/fuse"]  # small: every file is a commit
GIT_ENV = {
    "GIT_AUTHOR_NAME": "dfs test", "GIT_AUTHOR_EMAIL": "test@dfs",
    "GIT_COMMITTER_NAME": "dfs test", "GIT_COMMITTER_EMAIL": "test@dfs",
    "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}




def run(*argv: str | Path, cwd: Path, stdin: str | None = None) -> str:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          input=stdin, timeout=90, env={**os.environ, **GIT_ENV})
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr}"
    return done.stdout


def source_tree(into: Path) -> Path:
    """A small source tree: real modules, a symlink, an empty dir, an executable."""
    tree = into / "src"
    for relative in SOURCE_DIRS:
        shutil.copytree(REPO_ROOT / relative, tree / relative,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "empty").mkdir()
    (tree / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("dfs/client")
    return tree


def listing(root: Path) -> list[tuple[str, int, int]]:
    """(path, mode, size) of everything below root, links not followed."""
    rows = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(Path(directory) / name)
            size = info.st_size if not stat.S_ISDIR(info.st_mode) else 0
            rows.append((os.path.relpath(Path(directory) / name, root), info.st_mode, size))
    return sorted(rows)


def check_git(work: Path, local: Path) -> None:
    """git on `work` (a new directory on the mount); `local` is a local scratch dir."""
    repo = work / "repo"
    run("git", "init", "-q", "--template=", "-b", "main", repo, cwd=work)
    shutil.copytree(REPO_ROOT / "dfs/fuse", repo / "client",
                    ignore=shutil.ignore_patterns("__pycache__"))
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-q", "-m", "first", cwd=repo)
    with (repo / "client" / "ops.py").open("a") as changed:
        changed.write("# changed\n")
    assert run("git", "status", "--porcelain", cwd=repo) == " M client/ops.py\n"
    run("git", "commit", "-q", "-a", "-m", "second", cwd=repo)
    assert run("git", "status", "--porcelain", cwd=repo) == ""
    run("git", "fsck", "--strict", "--no-progress", cwd=repo)
    run("git", "clone", "-q", repo, work / "clone", cwd=work)
    assert run("git", "log", "--format=%s", cwd=work / "clone") == "second\nfirst\n"
    assert run("git", "status", "--porcelain", cwd=work / "clone") == ""
    assert (work / "clone" / "client" / "ops.py").read_bytes() == (
        repo / "client" / "ops.py").read_bytes()
    # And out of the mount: a clone onto local disk is identical.
    run("git", "clone", "-q", repo, local / "local", cwd=local)
    assert run("git", "rev-parse", "HEAD", cwd=local / "local") == run(
        "git", "rev-parse", "HEAD", cwd=repo)


SQL_WORK = """
CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1500)
INSERT INTO t SELECT x, hex(randomblob(40 + x % 200)) FROM c;
UPDATE t SET body = hex(randomblob(300)) WHERE id % 7 = 0;
DELETE FROM t WHERE id % 11 = 0;
CREATE INDEX t_body ON t(body);
"""


def check_sqlite(work: Path, journal: str) -> None:
    """sqlite3 in `journal` mode (WAL or DELETE) on `work`, a new directory."""
    db = work / "test.db"
    mode = run("sqlite3", db, f"PRAGMA journal_mode={journal};", cwd=work).strip()
    assert mode.lower() == journal.lower()
    run("sqlite3", db, f"PRAGMA journal_mode={journal};\nBEGIN;{SQL_WORK}COMMIT;", cwd=work)
    if journal == "WAL":  # a second connection reads while a writer has the WAL open
        writer = subprocess.Popen(["sqlite3", str(db)], stdin=subprocess.PIPE, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write("INSERT INTO t(body) VALUES ('from the writer');\nSELECT 'done';\n")
        writer.stdin.flush()
        assert writer.stdout.readline() == "done\n"
        assert (work / "test.db-wal").exists()
        count = run("sqlite3", db, "SELECT count(*) FROM t;", cwd=work)
        writer.communicate("", timeout=60)
        assert int(count) in (1364, 1365)
    checked = run("sqlite3", db, "PRAGMA integrity_check; SELECT count(*) FROM t;", cwd=work)
    expected = 1364 + (1 if journal == "WAL" else 0)  # 1500 - 136 deleted (+ the writer's)
    assert checked.split() == ["ok", str(expected)]


def check_tar_and_compileall(target: Path, local: Path) -> None:
    """`tar -x` into `target` (a new directory) then `diff -r`; compileall there."""
    tree = source_tree(local)
    archive = local / "src.tar"
    run("tar", "-cf", archive, "-C", local, "src", cwd=local)
    run("tar", "-xpf", archive, "-C", target, cwd=local)
    assert run("diff", "-r", "--no-dereference", tree, target / "src", cwd=local) == ""
    assert listing(target / "src") == listing(tree)
    assert run(target / "src" / "run.sh", cwd=target) == "ok\n"

    run(sys.executable, "-m", "compileall", "-q", target / "src" / "dfs", cwd=local)
    sources = sorted((target / "src" / "dfs").rglob("*.py"))
    compiled = {p.name.split(".")[0] + str(p.parent.parent)
                for p in (target / "src" / "dfs").rglob("__pycache__/*.pyc")}
    assert compiled == {p.stem + str(p.parent) for p in sources}
    pyc_times = {p: p.stat().st_mtime_ns for p in (target / "src").rglob("*.pyc")}
    # A second run finds every .pyc current: source mtimes survived on the mount.
    run(sys.executable, "-m", "compileall", "-q", target / "src" / "dfs", cwd=local)
    assert {p: p.stat().st_mtime_ns for p in (target / "src").rglob("*.pyc")} == pyc_times
