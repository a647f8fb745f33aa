"""What every `python -m bench...` entry point does around its coroutine."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any


def concurrencies(parser: argparse.ArgumentParser, text: str,
                  option: str = "--concurrency") -> list[int]:
    """`--concurrency 1,8,16` (or `--workers 1,2`): at least one value, each >= 1 (else
    the usage error)."""
    try:
        values = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        parser.error(f"{option} {text!r}: comma-separated integers")
    if not values or min(values) < 1:
        parser.error(f"{option}: at least one value, each >= 1")
    return values


class Terminated(Exception):
    """SIGTERM: the run was cancelled, its clean-up done."""


def run_main(main: Coroutine[Any, Any, int], name: str) -> int:
    """Run `main`; Ctrl-C (130) and SIGTERM (143) cancel it, so its `finally` blocks stop
    what it started; 1 with a one-line message for an expected failure."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(message)s")
    # the adapters a bench process borrows (stream creation) log as if they were the service
    logging.getLogger("agent_executor").setLevel(logging.ERROR)
    try:
        return asyncio.run(_cancelled_by_sigterm(main))
    except KeyboardInterrupt:
        return 130
    except Terminated:
        print(f"{name}: terminated", file=sys.stderr)
        return 143
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _cancelled_by_sigterm(main: Coroutine[Any, Any, int]) -> int:
    task = asyncio.current_task()
    assert task is not None
    terminated = asyncio.Event()

    def terminate() -> None:
        terminated.set()
        task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    try:
        return await main
    except asyncio.CancelledError:
        if terminated.is_set():
            raise Terminated from None
        raise
