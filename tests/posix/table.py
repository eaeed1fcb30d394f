"""Errno tables: parse the data files in tests/posix/tables/ and run them on a target.

Format, one step per line (pjdfstest in spirit):

    == title                    starts a case; each case gets a fresh, empty test root
    root UID:GID MODE           optional, right after the title: owner and mode of the root
    CREDS OP ARG... -> EXPECT   run OP as CREDS (uid, uid:gid or uid:gid:g1,g2), expect
                                "0", an errno name, or the value a query returns

Paths are relative to the test root; a name token N*c stands for c repeated N times and
backslash escapes (\\xff) give arbitrary bytes. A target is anything with
`reset(owner: Creds, mode: int)` and `run(creds, op, args) -> str`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tests.posix.vocab import OPERATIONS, ROOT, Creds, decode_name, parse_mode

NAME_VALUED = {"readdir", "readlink", "getxattr", "lgetxattr", "listxattr"}

TABLES = Path(__file__).resolve().parent / "tables"


class Target(Protocol):
    def reset(self, owner: Creds, mode: int) -> None: ...

    def run(self, creds: Creds, op: str, args: list[str]) -> str: ...


@dataclass(frozen=True)
class Step:
    where: str  # file:line
    creds: Creds
    op: str
    args: list[str]
    expect: str


@dataclass
class Case:
    where: str
    title: str
    root_owner: Creds = ROOT
    root_mode: int = 0o755
    steps: list[Step] = field(default_factory=list)


class TableError(ValueError):
    """A table line that does not follow the format."""


def parse(text: str, source: str) -> list[Case]:
    cases: list[Case] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{source}:{number}"
        if not line or line.startswith("#"):
            continue
        if line.startswith("=="):
            cases.append(Case(where, line[2:].strip()))
            continue
        if not cases:
            raise TableError(f"{where}: a step before the first '== title'")
        case = cases[-1]
        if line.startswith("root "):
            _, owner, mode = line.split()
            case.root_owner, case.root_mode = Creds.parse(owner), parse_mode(mode)
            continue
        case.steps.append(_parse_step(line, where))
    return cases


def _parse_step(line: str, where: str) -> Step:
    if " -> " not in line:
        raise TableError(f"{where}: no ' -> EXPECT'")
    call, expect = line.rsplit(" -> ", 1)
    tokens = shlex.split(call, posix=False)
    if len(tokens) < 2:
        raise TableError(f"{where}: want CREDS OP ARGS")
    creds, op = Creds.parse(tokens[0]), tokens[1]
    args = [_unquote(token) for token in tokens[2:]]
    if op not in OPERATIONS:
        raise TableError(f"{where}: unknown operation {op!r}")
    if len(args) != len(OPERATIONS[op]):
        raise TableError(f"{where}: {op} takes {', '.join(OPERATIONS[op])}")
    return Step(where, creds, op, args, _expected(op, expect.strip()))


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    return token


def _expected(op: str, expect: str) -> str:
    """Values that are names are written like names (escapes, N*c); errnos are not."""
    if op not in NAME_VALUED or expect.startswith("E"):
        return expect
    return ",".join(decode_name(part).decode("latin-1") for part in expect.split(","))


def load_all() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(TABLES.glob("*.txt")):
        cases.extend(parse(path.read_text(), path.name))
    return cases


def run_case(target: Target, case: Case) -> list[str]:
    """Runs one case; returns a line per step whose result differs from the table."""
    target.reset(case.root_owner, case.root_mode)
    mismatches = []
    for step in case.steps:
        got = target.run(step.creds, step.op, step.args)
        if got != step.expect:
            call = " ".join([step.creds.text(), step.op, *step.args])
            mismatches.append(f"{step.where}: {call} -> {got}, table says {step.expect}")
    return mismatches
