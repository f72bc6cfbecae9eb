"""Scenes of the built-in task: a grid of coloured shapes, rendered to pixels and read back.

A scene is a `rows x cols` grid; each cell is empty or holds one shape with a size, a colour and
a kind. Rows are numbered 1.. from the top, columns 1.. from the left. `render` draws it as a
uint8 image `[H, W, 3]` (one `cell_px` square per cell, a light grid line on each cell's top and
left edge); `read_scene` recovers the scene from the pixels alone, which is how the tests check
that every answer is visible in the image.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from pathlib import Path

import numpy as np

SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow")
KINDS = ("circle", "square", "triangle")
ATTRIBUTE_VALUES = {"colour": COLOURS, "kind": KINDS, "size": SIZES}  # the order of features and options
PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (230, 200, 30),
}
BACKGROUND = (250, 250, 250)
GRID_LINE = (200, 200, 200)


@dataclasses.dataclass(frozen=True)
class Shape:
    size: str
    colour: str
    kind: str

    def describe(self) -> str:
        """ "large red circle"."""
        return f"{self.size} {self.colour} {self.kind}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """`cells[(row, col)]` (1-based) -> Shape; absent cells are empty."""

    rows: int
    cols: int
    cells: dict

    def at(self, row: int, col: int) -> Shape | None:
        return self.cells.get((row, col))

    def positions(self) -> list[tuple[int, int]]:
        return sorted(self.cells)

    def matching_cells(self, size=None, colour=None, kind=None) -> list[tuple[int, int]]:
        """Positions of the shapes with every attribute given (None matches all), in reading
        order (row by row from the top, left to right)."""
        return [
            position
            for position, shape in sorted(self.cells.items())
            if (size is None or shape.size == size)
            and (colour is None or shape.colour == colour)
            and (kind is None or shape.kind == kind)
        ]

    def count(self, size=None, colour=None, kind=None) -> int:
        return len(self.matching_cells(size, colour, kind))

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "cells": [[r, c, s.size, s.colour, s.kind] for (r, c), s in sorted(self.cells.items())],
        }

    @classmethod
    def from_json(cls, data: dict) -> "Scene":
        cells = {(r, c): Shape(size, colour, kind) for r, c, size, colour, kind in data["cells"]}
        return cls(data["rows"], data["cols"], cells)


def random_scene(
    rng: np.random.Generator, rows: int = 3, cols: int = 3, min_shapes: int = 3, max_shapes: int = 7
) -> Scene:
    n = int(rng.integers(min_shapes, max_shapes + 1))
    flat = rng.choice(rows * cols, size=n, replace=False)
    cells = {}
    for index in sorted(flat.tolist()):
        cells[(index // cols + 1, index % cols + 1)] = Shape(
            SIZES[rng.integers(len(SIZES))], COLOURS[rng.integers(len(COLOURS))], KINDS[rng.integers(len(KINDS))]
        )
    return Scene(rows, cols, cells)


@functools.lru_cache(maxsize=None)
def _shape_mask(kind: str, size: str, cell_px: int) -> np.ndarray:
    """Boolean `[cell_px, cell_px]` mask of one shape centred in its cell (row/col 0 is grid line)."""
    extent = round(cell_px * (0.75 if size == "large" else 0.375))
    start = 1 + (cell_px - 1 - extent) // 2
    ys, xs = np.mgrid[0:cell_px, 0:cell_px]
    inside_box = (ys >= start) & (ys < start + extent) & (xs >= start) & (xs < start + extent)
    if kind == "square":
        return inside_box
    centre = start + (extent - 1) / 2
    if kind == "circle":
        return (ys - centre) ** 2 + (xs - centre) ** 2 <= (extent / 2) ** 2
    if kind == "triangle":  # apex up: the half-width grows linearly down the box
        half_width = (ys - start + 1) / extent * (extent / 2)
        return inside_box & (np.abs(xs - centre) <= half_width)
    raise ValueError(f"unknown shape kind {kind!r}; known: {KINDS}")


def render(scene: Scene, cell_px: int = 16) -> np.ndarray:
    """The scene as uint8 pixels `[rows * cell_px, cols * cell_px, 3]`."""
    image = np.empty((scene.rows * cell_px, scene.cols * cell_px, 3), np.uint8)
    image[:] = BACKGROUND
    image[::cell_px, :] = GRID_LINE
    image[:, ::cell_px] = GRID_LINE
    for (row, col), shape in scene.cells.items():
        tile = image[(row - 1) * cell_px : row * cell_px, (col - 1) * cell_px : col * cell_px]
        tile[_shape_mask(shape.kind, shape.size, cell_px)] = PALETTE[shape.colour]
    return image


def read_scene(image: np.ndarray, rows: int = 3, cols: int = 3) -> Scene:
    """Recover the scene from pixels alone: in each cell (grid lines cut off) the non-background
    pixels give the colour (nearest palette entry to their mean), the size (bounding-box width)
    and the kind (share of the bounding box they fill)."""
    height, width, _ = image.shape
    cell_px = height // rows
    if height != rows * cell_px or width != cols * cell_px:
        raise ValueError(f"image of {height}x{width} pixels does not split into a {rows}x{cols} grid")
    palette = np.array(list(PALETTE.values()), np.float32)
    cells = {}
    for row in range(1, rows + 1):
        for col in range(1, cols + 1):
            tile = image[(row - 1) * cell_px + 1 : row * cell_px, (col - 1) * cell_px + 1 : col * cell_px]
            ink = np.abs(tile.astype(np.int32) - np.array(BACKGROUND)).sum(-1) > 60
            if not ink.any():
                continue
            ys, xs = np.nonzero(ink)
            box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
            fill = ink.sum() / (box_h * box_w)
            colour = list(PALETTE)[int(np.argmin(((palette - tile[ink].mean(0)) ** 2).sum(-1)))]
            size = "large" if box_w > cell_px // 2 else "small"
            kind = "square" if fill > 0.95 else "circle" if fill > 0.72 else "triangle"
            cells[(row, col)] = Shape(size, colour, kind)
    return Scene(rows, cols, cells)


# Columns of `cell_features`: each attribute's one-hot classes in turn, then the empty flag.
_CLASS_OFFSET = dict(zip(ATTRIBUTE_VALUES, np.cumsum([0] + [len(v) for v in ATTRIBUTE_VALUES.values()]).tolist()))
_EMPTY_FLAG = sum(len(values) for values in ATTRIBUTE_VALUES.values())


def cell_feature_dim(rows: int, cols: int) -> int:
    """Width of `cell_features`: colour, kind and size classes, an empty flag, row and column."""
    return _EMPTY_FLAG + 1 + rows + cols


def cell_features(image: np.ndarray, rows: int = 3, cols: int = 3) -> np.ndarray:
    """Frozen per-cell image features `[rows * cols, cell_feature_dim(rows, cols)]` float32, row-major.

    What a fixed object detector reports for each cell, read from the pixels by `read_scene`:
    one-hot colour, kind and size classes (all zero for an empty cell), an "empty" flag, then the
    one-hot row and column. The model gets these as precomputed features, as MM-CoT gets frozen
    DETR features; it still has to learn what they mean, which cell a name in the text refers to,
    and how to count and compare what it finds. (Class outputs rather than raw measurements such
    as mean colour or box size: from those, a model of the default size did not learn to read
    the image within the default training budget.)
    """
    scene = read_scene(image, rows, cols)
    features = np.zeros((rows * cols, cell_feature_dim(rows, cols)), np.float32)
    for index in range(rows * cols):
        row, col = divmod(index, cols)
        shape = scene.at(row + 1, col + 1)
        if shape is None:
            features[index, _EMPTY_FLAG] = 1.0
        else:
            for attribute, values in ATTRIBUTE_VALUES.items():
                features[index, _CLASS_OFFSET[attribute] + values.index(getattr(shape, attribute))] = 1.0
        features[index, _EMPTY_FLAG + 1 + row] = 1.0
        features[index, _EMPTY_FLAG + 1 + rows + col] = 1.0
    return features


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of uint8 pixels `[H, W, 3]` (what the API Teachers are sent)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> None:
    """Write pixels as PNG, each pixel as a `scale x scale` block (for a readable README figure)."""
    pixels = np.repeat(np.repeat(np.asarray(image, np.uint8), scale, 0), scale, 1)
    Path(path).write_bytes(png_bytes(pixels))
