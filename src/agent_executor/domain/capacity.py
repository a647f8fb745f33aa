"""How many jobs one process runs at once: slots taken and given back."""

from __future__ import annotations

import asyncio


class Slot:
    """One taken slot; `release` gives it back (once, however often it is called)."""

    def __init__(self, capacity: Capacity) -> None:
        self._capacity: Capacity | None = capacity

    def release(self) -> None:
        capacity, self._capacity = self._capacity, None
        if capacity is not None:
            capacity._give_back()  # noqa: SLF001


class Capacity:
    """`size` slots. `reserve` takes one now or returns None; `acquire` waits for one
    (the waiters are counted, and served first come first served); `wait_free` wakes
    when a slot is free, so an intake can pull work only when it can run it."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("capacity needs at least one slot")
        self.size = size
        self._taken = 0
        self._waiters: list[asyncio.Future[Slot]] = []
        self._freed = asyncio.Event()

    @property
    def taken(self) -> int:
        return self._taken

    @property
    def waiting(self) -> int:
        """Jobs claimed and waiting for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    @property
    def free(self) -> int:
        """Slots neither taken nor promised to a waiting job."""
        return max(0, self.size - self._taken - self.waiting)

    def reserve(self) -> Slot | None:
        if self.free <= 0:
            return None
        self._taken += 1
        return Slot(self)

    async def acquire(self) -> Slot:
        slot = self.reserve()
        if slot is not None:
            return slot
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                waiter.result().release()  # handed a slot while being cancelled
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def wait_free(self) -> None:
        """Return once a slot is free (at once if one is)."""
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()

    def _give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(Slot(self))  # the slot passes on, still taken
                return
        self._taken -= 1
        self._freed.set()
