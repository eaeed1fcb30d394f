"""How a replica that cannot serve a call says so on the wire: UNAVAILABLE with
the leader's address in the `dfs-leader` trailing metadata (see DESIGN.md)."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from dfs.protocol import LEADER_METADATA_KEY


async def abort_not_leader(context: Any, leader_addr: str | None) -> NoReturn:
    context.set_trailing_metadata(((LEADER_METADATA_KEY, leader_addr or ""),))
    await context.abort(
        grpc.StatusCode.UNAVAILABLE, f"not the leader; leader is {leader_addr or 'unknown'}"
    )
    raise AssertionError("unreachable: abort raises")


async def abort_stalled(context: Any) -> NoReturn:
    await context.abort(grpc.StatusCode.UNAVAILABLE, "the log did not answer in time; retry")
    raise AssertionError("unreachable: abort raises")
