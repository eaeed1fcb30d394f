"""The durable records' byte codec and recovery from a WAL replay."""

from __future__ import annotations

import pytest

from dfs.paxos.ballot import Ballot
from dfs.paxos.config import Config
from dfs.paxos.messages import LogEntry
from dfs.paxos.records import (
    AcceptRecord,
    ChosenRecord,
    PromiseRecord,
    SnapshotRecord,
    decode_record,
    encode_record,
    recover,
)

CONFIG = Config.of({1: "a:1", 2: "b:2", 3: "c:3"})
RECORDS = [
    PromiseRecord(Ballot(3, 2)),
    AcceptRecord((LogEntry(1, Ballot(3, 2), (b"x", b"", b"\x00" * 300)),)),
    AcceptRecord((LogEntry(2, Ballot(3, 2), (), CONFIG), LogEntry(3, Ballot(3, 2)))),
    ChosenRecord(2),
    SnapshotRecord(9, CONFIG),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_codec_round_trips_and_is_deterministic(record: object) -> None:
    raw = encode_record(record)  # type: ignore[arg-type]
    assert decode_record(raw) == record
    assert encode_record(decode_record(raw)) == raw


def test_truncated_or_padded_records_are_refused() -> None:
    raw = encode_record(RECORDS[1])
    with pytest.raises(ValueError):
        decode_record(raw[:-3])
    with pytest.raises(ValueError):
        decode_record(raw + b"\x00")
    with pytest.raises(ValueError):
        decode_record(b"\x63")


def test_recover_keeps_latest_accept_and_highest_promise() -> None:
    state = recover(
        [
            PromiseRecord(Ballot(1, 1)),
            AcceptRecord((LogEntry(1, Ballot(1, 1), (b"old",)),)),
            AcceptRecord((LogEntry(1, Ballot(2, 3), (b"new",)), LogEntry(2, Ballot(2, 3)))),
            ChosenRecord(5),  # only slots the log holds can be chosen
        ]
    )
    assert state.promised == Ballot(2, 3)  # an accept implies its promise
    assert state.log[1].commands == (b"new",)
    assert state.chosen_upto == 2


def test_recover_drops_the_log_a_snapshot_covers() -> None:
    state = recover(
        [
            AcceptRecord(tuple(LogEntry(s, Ballot(1, 1)) for s in range(1, 6))),
            SnapshotRecord(3, CONFIG),
        ]
    )
    assert sorted(state.log) == [4, 5]
    assert state.snapshot_slot == 3 and state.snapshot_config == CONFIG
    assert state.chosen_upto == 3
