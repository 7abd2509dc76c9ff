"""Recent insights served again: fresh ones as they are, older ones while one background recomputation runs, too old
ones never; one computation per key however many readers ask at once. A hand-moved clock, no database."""

from __future__ import annotations

import asyncio

import pytest

from services.web.insights_cache import RecentResults


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Counts its computations; each returns the next number, after `gate` opens (when set)."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def __call__(self) -> int:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database went away")
        return self.calls


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fresh_figures_are_served_without_computing_again() -> None:
    clock, source = Clock(), Source()
    cache: RecentResults[str, int] = RecentResults(fresh_for=60, usable_for=600, clock=clock)
    first = await cache.get("30d", source)
    clock.now += 59
    again = await cache.get("30d", source)
    assert (first.value, again.value, source.calls) == (1, 1, 1)
    assert again.at == first.at
    assert (await cache.get("7d", source)).value == 2  # another key is computed apart


async def test_older_figures_are_served_while_one_recomputation_runs_then_the_new_ones() -> None:
    clock, source = Clock(), Source()
    cache: RecentResults[str, int] = RecentResults(fresh_for=60, usable_for=600, clock=clock)
    await cache.get("30d", source)
    clock.now += 61
    source.gate = asyncio.Event()
    stale = [await cache.get("30d", source) for _ in range(3)]
    assert [s.value for s in stale] == [1, 1, 1]
    await settle()
    assert source.calls == 2  # one recomputation for the three readers
    source.gate.set()
    await settle()
    assert (await cache.get("30d", source)).value == 2


async def test_too_old_figures_are_not_served_and_readers_share_one_computation() -> None:
    clock, source = Clock(), Source()
    cache: RecentResults[str, int] = RecentResults(fresh_for=60, usable_for=600, clock=clock)
    await cache.get("30d", source)
    clock.now += 600
    source.gate = asyncio.Event()
    readers = [asyncio.create_task(cache.get("30d", source)) for _ in range(4)]
    await settle()
    assert not any(r.done() for r in readers)
    source.gate.set()
    assert [r.value for r in await asyncio.gather(*readers)] == [2, 2, 2, 2]
    assert source.calls == 2


async def test_a_failed_recomputation_keeps_the_figures_until_too_old_and_then_fails_the_reader() -> None:
    clock, source = Clock(), Source()
    cache: RecentResults[str, int] = RecentResults(fresh_for=60, usable_for=600, clock=clock)
    await cache.get("30d", source)
    source.fail = True
    clock.now += 100
    assert (await cache.get("30d", source)).value == 1
    await settle()
    assert (await cache.get("30d", source)).value == 1
    clock.now += 500
    with pytest.raises(RuntimeError, match="database went away"):
        await cache.get("30d", source)


async def test_fresh_for_zero_computes_every_time_and_the_least_recently_used_key_goes_first() -> None:
    source = Source()
    off: RecentResults[str, int] = RecentResults(fresh_for=0, usable_for=0)
    assert [(await off.get("30d", source)).value for _ in range(3)] == [1, 2, 3]
    clock, source = Clock(), Source()
    small: RecentResults[str, int] = RecentResults(fresh_for=60, usable_for=600, size=2, clock=clock)
    await small.get("a", source)
    await small.get("b", source)
    await small.get("a", source)  # a is used again: b is now the least recent
    await small.get("c", source)
    assert (await small.get("a", source)).value == 1
    assert (await small.get("b", source)).value == 4  # gone, so computed again
