"""I/O-bound work inside a shard: an async call per item, a bounded number in flight, each reply stored.

:func:`map_stored` runs on the caller's asyncio event loop (a stage's ``process`` is synchronous:
it calls ``asyncio.run`` on a coroutine that opens its client session and awaits ``map_stored``).
Items whose request is already in the :class:`~corpus.run.item_store.ItemStore` are not called
again; every other reply is put in the store the moment it arrives, so a killed shard redoes at most
the calls that were in flight. Results come back in item order, never completion order, so the
stage's output bytes do not depend on which call finished first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from corpus.run.item_store import ItemStore

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What became of one item: its stored ``value``, or an ``error`` (``"Type: message"``, not stored,
    so a rerun tries again). ``stored`` is True when the value came from the store, not a call."""

    value: Any = None
    error: str | None = None
    stored: bool = False


async def map_stored(
    items: Sequence[T], key: Callable[[T], str], call: Callable[[T], Awaitable[Any]], store: ItemStore,
    max_in_flight: int, what: str = "item",
) -> list[Outcome]:
    """One :class:`Outcome` per item, in item order.

    ``key(item)``: the item's request key (:func:`~corpus.run.item_store.request_key`); items with the
    same key are called once. ``call(item)``: the async work; its JSON-able reply is stored. An
    exception from a call becomes that item's error and never stops the others (cancellation does).
    A replay-only store raises :class:`~corpus.run.item_store.ReplayMiss` before any call if an item
    is missing.
    """
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
    keys = [key(item) for item in items]
    stored, missing = store.lookup(keys, what)
    outcomes = {k: Outcome(value=v, stored=True) for k, v in stored.items()}
    first = {}
    for k, item in zip(keys, items):
        first.setdefault(k, item)
    jobs = iter([(k, first[k]) for k in missing])

    async def worker() -> None:
        for k, item in jobs:  # one shared iterator: each job is taken by exactly one worker
            try:
                reply = await call(item)
            except Exception as e:  # one failed call is that item's error, not the shard's end
                outcomes[k] = Outcome(error=f"{type(e).__name__}: {e}")
                continue
            outcomes[k] = Outcome(value=store.put(k, reply))

    await asyncio.gather(*(worker() for _ in range(max_in_flight)))
    return [outcomes[k] for k in keys]

