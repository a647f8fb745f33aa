"""What every `python -m bench...` entry point does around its coroutine."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any


def run_main(main: Coroutine[Any, Any, int], name: str) -> int:
    """Run `main`; 130 on Ctrl-C, 1 with a one-line message for an expected failure."""
    logging.basicConfig(level=logging.WARNING, format=f"{name}: %(message)s")
    # the adapters a bench process borrows (stream creation) log as if they were the service
    logging.getLogger("agent_executor").setLevel(logging.ERROR)
    try:
        return asyncio.run(main)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
