"""The status screen's health rules: each reason, and its level."""

from __future__ import annotations

from dfs.admin.health import ClusterFigures, DataMember, Level, MetaMember, assess


def cluster(**changes: object) -> ClusterFigures:
    figures = ClusterFigures(
        meta=[MetaMember(1, "a:1", True, True, "leader", 100),
              MetaMember(2, "a:2", True, True, "follower", 100),
              MetaMember(3, "a:3", True, True, "follower", 99)],
        leader_chosen=100,
        data=[DataMember(i, f"d:{i}", "up", 0.5, 1000, 100) for i in range(1, 5)],
    )
    for name, value in changes.items():
        setattr(figures, name, value)
    return figures


def test_a_whole_cluster_is_ok() -> None:
    health = assess(cluster())
    assert health.level == Level.OK and health.reasons == []


def test_a_down_data_server_and_under_replication_warn() -> None:
    figures = cluster(under_replicated=12)
    figures.data[1] = DataMember(2, "d:2", "up", 9.0, 1000, 100)  # silent past 5 s
    health = assess(figures)
    assert health.level == Level.WARN
    assert any("data 2 (d:2) is down" in r for r in health.reasons)
    assert any("12 chunks under-replicated" in r for r in health.reasons)


def test_lost_chunks_and_lost_quorum_are_errors() -> None:
    assert assess(cluster(lost=1)).level == Level.ERR
    figures = cluster()
    figures.meta = [MetaMember(1, "a:1", True, True, "follower", 100),
                    MetaMember(2, "a:2", True, False), MetaMember(3, "a:3", True, False)]
    health = assess(figures)
    assert health.level == Level.ERR and "no metadata quorum" in health.reasons[0]


def test_lag_fill_drain_and_too_few_servers() -> None:
    figures = cluster(replicas=3)
    figures.meta[2] = MetaMember(3, "a:3", True, True, "follower", 1)
    figures.leader_chosen = 5000
    figures.data = [DataMember(1, "d:1", "up", 0.1, 1000, 900),
                    DataMember(2, "d:2", "draining", 0.1, 1000, 10),
                    DataMember(3, "d:3", "out", 0.1, 1000, 0, misplaced=4)]
    health = assess(figures)
    assert health.level == Level.WARN
    text = " | ".join(health.reasons)
    for expected in ("lags the leader", "90% full", "draining", "out with 4 copies",
                     "2 data servers serving, fewer than R = 3"):
        assert expected in text, text
