"""Inspection with `jax.profiler`: named scopes for the jitted steps, and a trace of a window of
the core PPO steps written into the work directory (open it in TensorBoard's profile plugin /
XProf, or the `.trace.json.gz` in Perfetto)."""

from __future__ import annotations

import functools
from pathlib import Path

import jax


def scoped(name: str):
    """Decorator: the function's operations carry the named scope `name` in traces and HLO."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            with jax.named_scope(name):
                return fn(*args, **kwargs)

        return wrapped

    return decorate


class StepWindow:
    """Traces steps `start` (inclusive) to `stop` (exclusive) of a counted loop into `directory`.
    Call `before(step)` before each step and `after(step, result)` after it; with no window
    (`steps=()`) both do nothing."""

    def __init__(self, steps: tuple[int, ...], directory: str | Path):
        self.start, self.stop = steps if steps else (-1, -1)
        self.directory, self.active = Path(directory), False

    def before(self, step: int) -> None:
        if step == self.start and not self.active:
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory))
            self.active = True

    def after(self, step: int, result) -> None:
        if self.active and step + 1 >= self.stop:
            jax.block_until_ready(result)  # the device work of the last traced step is in the trace
            jax.profiler.stop_trace()
            self.active = False

    def close(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
