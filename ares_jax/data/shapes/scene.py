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
        """"large red circle"."""
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

    def count(self, size=None, colour=None, kind=None, region=None) -> int:
        """Shapes matching every attribute given (None matches all), inside `region` if given."""
        return sum(
            1
            for (row, col), shape in self.cells.items()
            if (size is None or shape.size == size)
            and (colour is None or shape.colour == colour)
            and (kind is None or shape.kind == kind)
            and (region is None or in_region(region, row, col, self.rows, self.cols))
        )

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


REGIONS = ("top half", "bottom half", "left half", "right half")


def in_region(region: str, row: int, col: int, rows: int, cols: int) -> bool:
    if region == "top half":
        return row <= rows // 2
    if region == "bottom half":
        return row > rows // 2
    if region == "left half":
        return col <= cols // 2
    if region == "right half":
        return col > cols // 2
    raise ValueError(f"unknown region {region!r}; known: {REGIONS}")


def random_scene(rng: np.random.Generator, rows: int = 4, cols: int = 4, min_shapes: int = 5,
                 max_shapes: int = 11) -> Scene:
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
        tile = image[(row - 1) * cell_px:row * cell_px, (col - 1) * cell_px:col * cell_px]
        tile[_shape_mask(shape.kind, shape.size, cell_px)] = PALETTE[shape.colour]
    return image


def _cells(image: np.ndarray, rows: int, cols: int):
    """Per cell (row, col, ink mask `[cell_px - 1, cell_px - 1]`, tile pixels), grid lines cut off."""
    height, width, _ = image.shape
    cell_px = height // rows
    if height != rows * cell_px or width != cols * cell_px:
        raise ValueError(f"image of {height}x{width} pixels does not split into a {rows}x{cols} grid")
    for row in range(1, rows + 1):
        for col in range(1, cols + 1):
            tile = image[(row - 1) * cell_px + 1:row * cell_px, (col - 1) * cell_px + 1:col * cell_px]
            ink = np.abs(tile.astype(np.int32) - np.array(BACKGROUND)).sum(-1) > 60
            yield row, col, ink, tile


def _measure(ink: np.ndarray, tile: np.ndarray):
    """(mean ink colour [3], box height, box width, fill of the box) of a non-empty cell."""
    ys, xs = np.nonzero(ink)
    box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    return tile[ink].mean(0), box_h, box_w, ink.sum() / (box_h * box_w)


def read_scene(image: np.ndarray, rows: int = 4, cols: int = 4) -> Scene:
    """Recover the scene from pixels alone: per cell, the non-background pixels give the colour
    (nearest palette entry), the size (bounding-box width) and the kind (fill of the box)."""
    palette = np.array(list(PALETTE.values()), np.float32)
    cell_px = image.shape[0] // rows
    cells = {}
    for row, col, ink, tile in _cells(image, rows, cols):
        if not ink.any():
            continue
        colour_mean, _, box_w, fill = _measure(ink, tile)
        colour = list(PALETTE)[int(np.argmin(((palette - colour_mean) ** 2).sum(-1)))]
        size = "large" if box_w > cell_px // 2 else "small"
        kind = "square" if fill > 0.95 else "circle" if fill > 0.72 else "triangle"
        cells[(row, col)] = Shape(size, colour, kind)
    return Scene(rows, cols, cells)


def cell_features(image: np.ndarray, rows: int = 4, cols: int = 4) -> np.ndarray:
    """Frozen per-cell image features `[rows * cols, 7 + rows + cols]` float32, row-major.

    What a fixed object detector would report for each cell, measured from the pixels: mean ink
    colour (RGB / 255), share of the cell inked, bounding-box height and width (/ cell size),
    fill of the box, then one-hot row and column. The model gets these as precomputed features,
    as MM-CoT gets frozen ViT/DETR features; it still has to learn what they mean.
    """
    cell_px = image.shape[0] // rows
    features = np.zeros((rows * cols, 7 + rows + cols), np.float32)
    for index, (row, col, ink, tile) in enumerate(_cells(image, rows, cols)):
        if ink.any():
            colour_mean, box_h, box_w, fill = _measure(ink, tile)
            features[index, :3] = colour_mean / 255.0
            features[index, 3:7] = ink.mean(), box_h / cell_px, box_w / cell_px, fill
        features[index, 7 + row - 1] = 1.0
        features[index, 7 + rows + col - 1] = 1.0
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
