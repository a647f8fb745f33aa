"""`python -m bench.profile FILE.speedscope.json [--top N] [--match TEXT]`: the
functions and modules a py-spy recording spent its samples in (self and total).

`bench --profile DIR` writes one such file per service measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    """py-spy beside this interpreter (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pid: int, out: Path | None, rate: int = 200) -> Iterator[None]:
    """Sample `pid` (and its worker processes) with py-spy into `out` (speedscope
    JSON) while the block runs; nothing when `out` is None. `--nonblocking`: the
    target is never paused; `--gil`: only the thread holding the GIL is sampled, so
    time is CPU, not waits."""
    binary = py_spy()
    if out is None or binary is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", str(rate),
                            "--format", "speedscope", "--output", str(out), "--nonblocking",
                            "--gil", "--subprocesses"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output, then exits
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(10)


def _frames(data: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = data["shared"]["frames"]
    return frames


def _label(frame: dict[str, Any]) -> str:
    file = str(frame.get("file", ""))
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{frame['name']} ({file}:{frame.get('line', '?')})"


def _area(frame: dict[str, Any]) -> str:
    file = str(frame.get("file", ""))
    if "site-packages/" in file:
        return file.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/src/agent_executor/" in file:
        return "agent_executor/" + file.split("/src/agent_executor/", 1)[1].split("/")[0]
    if "/lib/python3" in file:
        return "stdlib/" + file.split("/lib/python3", 1)[1].split("/")[1]
    return file or "?"


def summarise(path: Path, top: int, match: str | None) -> str:
    data = json.loads(path.read_text())
    frames = _frames(data)
    own: Counter[int] = Counter()
    total: Counter[int] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            if not stack:
                continue
            samples += weight
            own[stack[-1]] += weight
            for index in set(stack):
                total[index] += weight
            areas[_area(frames[stack[-1]])] += weight
    lines = [f"{path.name}: {samples} samples"]
    lines.append("\nself time by package / module area:")
    for area, weight in areas.most_common(top):
        lines.append(f"  {100 * weight / samples:5.1f}%  {area}")
    lines.append("\nself time by function:")
    for index, weight in own.most_common(top):
        lines.append(f"  {100 * weight / samples:5.1f}%  {_label(frames[index])}")
    lines.append("\ntotal (inclusive) time by function:")
    chosen = [(i, w) for i, w in total.most_common()
              if match is None or match in _label(frames[i])]
    for index, weight in chosen[:top]:
        lines.append(f"  {100 * weight / samples:5.1f}%  {_label(frames[index])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="only functions whose label holds this text (total)")
    args = parser.parse_args(argv)
    print(summarise(args.file, args.top, args.match))
    return 0


if __name__ == "__main__":
    sys.exit(main())
