"""The durable per-item store: survives SIGKILL, one segment per writer, torn tails ignored, replay."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from corpus.run.concurrency import map_stored
from corpus.run.item_store import ItemStore, ReplayMiss, open_store, request_key, store_dir


def test_request_key_is_canonical():
    a = request_key(model="m", template=2, input="x", params={"t": 0.1, "n": 1})
    assert a == request_key(params={"n": 1, "t": 0.1}, input="x", template=2, model="m")
    assert a != request_key(model="m", template=3, input="x", params={"t": 0.1, "n": 1})
    assert len(a) == 64
    with pytest.raises(TypeError, match="not storable as JSON"):
        request_key(model=object())


def test_values_read_back_in_another_store_as_json(tmp_path):
    k1, k2 = request_key(i=1), request_key(i=2)
    with ItemStore(tmp_path) as store:
        assert store.put(k1, {"text": "é\nline", "flags": ("a", "b")}) == {"text": "é\nline", "flags": ["a", "b"]}
        store.put(k2, [1.5, None])
        assert store.put(k2, "another reply") == [1.5, None]  # the first value of a key stays
        assert store.get(k1)["flags"] == ["a", "b"]
    again = ItemStore(tmp_path)
    assert len(again) == 2 and again.get(k1) == {"text": "é\nline", "flags": ["a", "b"]} and again.get(k2) == [1.5, None]
    assert again.get(request_key(i=3), "none") == "none"
    assert len(list(tmp_path.glob("*.seg"))) == 1
    with pytest.raises(ValueError, match="sha256 hex digest"):
        again.put("item-3", 1)


def _put_then_sigkill(root: str, n: int) -> None:
    store = ItemStore(root, sync_seconds=3600)
    for i in range(n):
        store.put(request_key(i=i), {"i": i})
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no atexit


def test_a_process_killed_with_sigkill_loses_nothing_it_put(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_put_then_sigkill, args=(str(tmp_path), 50))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    store = ItemStore(tmp_path)
    assert len(store) == 50 and store.get(request_key(i=49)) == {"i": 49}


def test_a_torn_last_record_is_ignored_and_later_writers_use_their_own_segment(tmp_path, caplog):
    with ItemStore(tmp_path) as store:
        for i in range(3):
            store.put(request_key(i=i), i)
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as f:  # a writer killed in the middle of its record
        f.write(request_key(i=3).encode() + b'\t{"half')
    store = ItemStore(tmp_path)
    assert len(store) == 3 and request_key(i=3) not in store
    store.put(request_key(i=3), 3)
    store.close()
    assert len(list(tmp_path.glob("*.seg"))) == 2
    assert ItemStore(tmp_path).get(request_key(i=3)) == 3
    # a damaged record in the middle of a segment is named and skipped, the rest still read
    data = segment.read_bytes().replace(b"\t1\n", b"\tX\n")
    segment.write_bytes(data)
    with caplog.at_level(logging.WARNING):
        store = ItemStore(tmp_path)
        assert store.get(request_key(i=1)) is None and store.get(request_key(i=2)) == 2
    assert str(segment) in caplog.text and "unreadable stored value" in caplog.text


def _writer(root: str, worker: int) -> None:
    with ItemStore(root) as store:
        for i in range(200):
            store.put(request_key(worker=worker, i=i), [worker, i])


def test_processes_writing_at_once_each_write_their_own_segment(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(list(tmp_path.glob("*.seg"))) == 3
    store = ItemStore(tmp_path)
    assert len(store) == 600 and store.get(request_key(worker=2, i=199)) == [2, 199]


class _Bound:
    name = "asker"

    def __init__(self, out_dir, replay_dir=None):
        self.out_dir, self.replay_dir = Path(out_dir), replay_dir and Path(replay_dir)


def test_a_rebuild_replays_the_original_store_copies_it_and_refuses_missing_items(tmp_path):
    with open_store(_Bound(tmp_path / "run")) as store:
        assert not store.replaying
        store.put(request_key(q=1), "one")
    assert store.root == store_dir(tmp_path / "run", "asker")
    replay = open_store(_Bound(tmp_path / "rebuilt", tmp_path / "run"), replay_only=True)
    assert replay.replaying and replay.replay_only
    assert replay.lookup([request_key(q=1)]) == ({request_key(q=1): "one"}, [])
    with pytest.raises(ReplayMiss, match=r"1 question\(s\) not in the stored outputs .*run/_store/asker"):
        replay.lookup([request_key(q=1), request_key(q=2)], what="question")
    replay.close()
    # what the rebuild replayed is in its own store: the rebuilt folder can itself be rebuilt
    assert ItemStore(store_dir(tmp_path / "rebuilt", "asker")).get(request_key(q=1)) == "one"
    # replay_only means nothing outside a rebuild
    assert not open_store(_Bound(tmp_path / "run"), replay_only=True).replay_only


def test_map_stored_bounds_in_flight_keeps_item_order_and_skips_stored_items(tmp_path):
    store = ItemStore(tmp_path)
    store.put(request_key(item=3), "stored three")
    calls, in_flight, peak = [], [0], [0]

    async def call(item):
        calls.append(item)
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.002 * (20 - item))  # later items finish first
        in_flight[0] -= 1
        if item == 7:
            raise ConnectionError("server said 503")
        return f"reply {item}"

    items = list(range(12)) + [5]  # a repeated request is called once
    out = asyncio.run(map_stored(items, lambda i: request_key(item=i), call, store, max_in_flight=4))
    assert sorted(calls) == [i for i in range(12) if i != 3]
    assert peak[0] == 4
    assert [o.value for o in out] == [f"reply {i}" if i != 3 else "stored three" for i in range(7)] + [None] + [
        f"reply {i}" for i in range(8, 12)] + ["reply 5"]
    assert out[3].stored and not out[4].stored
    assert out[7].error == "ConnectionError: server said 503"
    assert request_key(item=7) not in ItemStore(tmp_path)  # a failure is retried by the next run
    calls.clear()
    again = asyncio.run(map_stored(items, lambda i: request_key(item=i), call, ItemStore(tmp_path), max_in_flight=4))
    assert calls == [7] and [o.value for o in again] == [o.value for o in out]


def test_map_stored_refuses_before_any_call_when_a_replay_misses(tmp_path):
    ItemStore(tmp_path / "a").put(request_key(item=0), "zero")

    async def call(item):
        raise AssertionError("no call during a replay")

    store = ItemStore(tmp_path / "b", read_from=[tmp_path / "a"], replay_only=True)
    with pytest.raises(ReplayMiss, match="1 item"):
        asyncio.run(map_stored([0, 1], lambda i: request_key(item=i), call, store, max_in_flight=2))

