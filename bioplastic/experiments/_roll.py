"""Which rank did not answer: the collective roll call of :mod:`bioplastic.experiments.train`.

Every rank records in the process group's store how many collectives it has entered; when one
times out, the ranks that recorded fewer are named in a :class:`RankTimeout`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch.distributed as dist

from bioplastic.distributed import DistInfo

__all__ = ["RankTimeout"]


class RankTimeout(RuntimeError):
    """A rank did not answer a collective within the process group's timeout."""


#: Words of the errors torch raises when a collective times out or loses a peer.
_LOST_PEER = ("timed out", "timeout", "connection closed", "connection reset")
_ROLL_KEY = "bioplastic/collectives/rank{}"


def _is_lost_peer(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, dist.DistError) or any(w in text for w in _LOST_PEER)


class _Roll:
    """Names the ranks that did not answer a collective.

    Each rank writes to ``store`` (the process group's key-value store, served by a thread of
    rank 0 that keeps answering while a training thread is stuck) how many collectives it has
    entered, before entering one. When a collective fails with a timeout, the ranks that
    entered fewer never reached it: :meth:`collective` raises :class:`RankTimeout` naming them.
    One small store write per step; nothing at all for a single process.
    """

    def __init__(self, info: DistInfo, timeout_s: float, store: Any = None) -> None:
        self.info, self.timeout_s, self.entered = info, timeout_s, 0
        if store is None and info.distributed:
            store = dist.distributed_c10d._get_default_store()
        self.store = store

    @contextmanager
    def collective(self, where: str) -> Iterator[None]:
        """Run the block's collectives; a timeout becomes a :class:`RankTimeout`."""
        if not self.info.distributed:
            yield
            return
        self.entered += 1
        self.store.set(_ROLL_KEY.format(self.info.rank), str(self.entered))
        try:
            yield
        except RuntimeError as err:
            if isinstance(err, RankTimeout) or not _is_lost_peer(err):
                raise
            raise RankTimeout(self.message(where)) from err

    def missing(self) -> list[int] | None:
        """The ranks that entered fewer collectives than this one (``None``: unknown)."""
        behind = []
        try:
            for rank in range(self.info.world_size):
                key = _ROLL_KEY.format(rank)
                entered = int(self.store.get(key)) if self.store.check([key]) else 0
                if entered < self.entered:
                    behind.append(rank)
        except (RuntimeError, ValueError):  # the store itself is gone (rank 0 died)
            return None
        return behind

    def message(self, where: str) -> str:
        """One line: which rank did not answer, where, after how long, and what to do."""
        behind = self.missing()
        if behind:
            who = f"rank{'s' if len(behind) > 1 else ''} {', '.join(map(str, behind))}"
        elif behind is None:
            who = "a rank (unknown which: the store on rank 0 did not answer either)"
        else:
            who = "a rank (every rank reached this point; one stopped inside it)"
        return (
            f"{who} of {self.info.world_size} did not answer within {self.timeout_s:g} s "
            f"{where} (rank {self.info.rank} waited); if it is alive but slow, raise --timeout"
        )
