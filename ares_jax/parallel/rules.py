"""Logical-axis rules: which mesh axes split each logical axis of the parameters and batches.
Plain Python (no JAX), so the config can check them at start-up."""

from __future__ import annotations

from typing import Sequence

MESH_AXES = ("data", "fsdp", "tensor")


def parse_axis_rules(rules: Sequence[str]) -> tuple[tuple[str, str | tuple[str, ...] | None], ...]:
    """["embed=fsdp", "batch=data+fsdp", "kv="] -> (("embed", "fsdp"), ("batch", ("data", "fsdp")),
    ("kv", None)): logical axis -> mesh axes (None: not split)."""
    parsed = []
    for rule in rules:
        logical, sep, physical = rule.partition("=")
        axes = tuple(a.strip() for a in physical.split("+") if a.strip())
        if not sep or not logical.strip() or any(a not in MESH_AXES for a in axes):
            raise ValueError(
                f"mesh.axis_rules: {rule!r} must be LOGICAL=AXIS[+AXIS] with axes from {MESH_AXES} "
                f"(or empty: not split)"
            )
        parsed.append((logical.strip(), axes[0] if len(axes) == 1 else (axes or None)))
    return tuple(parsed)
