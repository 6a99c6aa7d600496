"""``queue/throttle.py``: sessions per destination, halved and paused on 421
or 4.7.x, grown back by one per good round (AIMD), forgotten at full speed."""

from __future__ import annotations

import asyncio

from mailserver.queue.throttle import FIRST_PAUSE, MAX_PAUSE, DestinationThrottle, is_throttling


def test_which_replies_throttle() -> None:
    assert is_throttling("421 4.7.0 Try again later")
    assert is_throttling("421 Service not available")
    assert is_throttling("450 4.7.28 Unusual rate of mail")
    assert is_throttling("451 4.7.1 Greylisted")
    assert not is_throttling("451 4.3.0 Local error")
    assert not is_throttling("550 5.7.1 Relaying denied")
    assert not is_throttling("250 2.0.0 OK")


def test_aimd_and_pauses() -> None:
    now = [100.0]

    async def go() -> None:
        t = DestinationThrottle(8, clock=lambda: now[0])
        assert t.limit("d.test") == 8 and t.paused("d.test") == 0
        await t.acquire("d.test")
        await t.release("d.test", ["421 4.7.0 slow down"], delivered=False)
        assert t.limit("d.test") == 4 and t.paused("d.test") == FIRST_PAUSE
        await t.acquire("d.test")
        await t.release("d.test", ["451 4.7.1 still too fast"], delivered=False)
        assert t.limit("d.test") == 2 and t.paused("d.test") == 2 * FIRST_PAUSE
        for _ in range(10):  # a long streak: the pause stops growing
            await t.acquire("d.test")
            await t.release("d.test", ["421 4.7.0"], delivered=False)
        assert t.limit("d.test") == 1 and t.paused("d.test") == MAX_PAUSE
        now[0] += MAX_PAUSE
        assert t.paused("d.test") == 0
        for expected in range(2, 9):  # one more session per good round
            await t.acquire("d.test")
            await t.release("d.test", ["250 2.0.0 ok"], delivered=True)
            assert t.limit("d.test") == expected
        assert "d.test" not in t._dest  # full speed, idle: forgotten

    asyncio.run(go())


def test_limit_holds_sessions_back() -> None:
    async def go() -> None:
        t = DestinationThrottle(2)
        await t.acquire("d.test")
        await t.acquire("d.test")
        third = asyncio.ensure_future(t.acquire("d.test"))
        await asyncio.sleep(0)
        assert not third.done()
        await t.release("d.test", ["250 ok"], delivered=True)
        await asyncio.wait_for(third, 1)
        await t.acquire("other.test")  # another destination is not held back

    asyncio.run(go())
