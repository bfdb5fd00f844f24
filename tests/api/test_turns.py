"""Per-conversation turns: one step at a time per (channel, address), in arrival order."""

from __future__ import annotations

import asyncio

from gateway.turns import Turns

KEY = ("sms", "tel:+989120000001")


async def test_turns_run_one_at_a_time_in_arrival_order() -> None:
    turns = Turns()
    order: list[int] = []
    inside = 0

    async def step(n: int) -> None:
        nonlocal inside
        await turns.acquire(KEY)
        try:
            inside += 1
            assert inside == 1, "two steps of one conversation ran at once"
            await asyncio.sleep(0)
            order.append(n)
        finally:
            inside -= 1
            turns.release(KEY)

    await asyncio.gather(*(step(n) for n in range(20)))
    assert order == list(range(20))
    assert turns.held() == 0


async def test_other_keys_do_not_wait() -> None:
    turns = Turns()
    await turns.acquire(KEY)
    await asyncio.wait_for(turns.acquire(("sms", "tel:+989120000002")), 1)
    assert turns.held() == 2


async def test_a_cancelled_waiter_neither_blocks_nor_loses_the_turn() -> None:
    turns = Turns()
    await turns.acquire(KEY)
    cancelled = asyncio.create_task(turns.acquire(KEY))
    after = asyncio.create_task(turns.acquire(KEY))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    turns.release(KEY)
    await asyncio.wait_for(after, 1)  # the turn passed over the cancelled waiter
    turns.release(KEY)
    assert turns.held() == 0


async def test_cancelled_just_after_being_handed_the_turn_passes_it_on() -> None:
    turns = Turns()
    await turns.acquire(KEY)
    first = asyncio.create_task(turns.acquire(KEY))
    second = asyncio.create_task(turns.acquire(KEY))
    await asyncio.sleep(0)
    turns.release(KEY)  # hands the turn to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.wait_for(second, 1)
    turns.release(KEY)
    assert turns.held() == 0
