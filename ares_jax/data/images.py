"""Images and precomputed image features of the real datasets (host side, no JAX).

- `resolve_inside`: a dataset-relative path that cannot leave the dataset folder.
- `read_pixels`: PNG/JPEG file or encoded bytes -> uint8 `[H, W, 3]`; a clear error when corrupt.
- `FeatureTable`: MM-CoT's precomputed features, a `.npy` array `[N, P, F]` plus `name_map.json`
  (question id -> row), memory-mapped so a 6 GB ViT table costs nothing until rows are read.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ares_jax.data.records import DataError, RecordError, read_json

PTH_TO_NPY = (
    'python -c "import sys, numpy, torch; numpy.save(sys.argv[2], torch.load(sys.argv[1]).numpy())" vit.pth vit.npy'
)


def resolve_inside(root: Path, relative: str, file: Path, record: str) -> Path:
    """`root / relative`, refused (RecordError naming `file` and `record`) when it leads outside
    `root`: an absolute path, `..`, or a symbolic link pointing out."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise RecordError(file, record, f"image path {relative!r} leads outside the dataset folder {root}")
    return path


def read_pixels(image: str | Path | bytes, file: str | Path = "", record: str | None = None) -> np.ndarray:
    """Decode an image file or encoded bytes to uint8 RGB `[H, W, 3]`; a corrupt or missing image
    raises DataError naming `file` (default: the image's own path) and `record`."""
    from PIL import Image

    source = io.BytesIO(image) if isinstance(image, bytes) else image
    try:
        with Image.open(source) as opened:
            opened.load()  # decodes every byte: a truncated or corrupt file fails here, not later
            return np.asarray(opened.convert("RGB"))
    except FileNotFoundError:
        reason = f"image file {image} does not exist"
    except Exception as error:  # PIL raises many kinds (OSError, SyntaxError, struct.error ...)
        reason = f"{'image bytes' if isinstance(image, bytes) else f'image {image}'} cannot be decoded: {error}"
    if record is None:
        raise DataError(f"{file or image}: {reason}")
    raise RecordError(file or image, record, reason)


def load_pixels(image) -> np.ndarray | None:
    """A `Problem.image` as pixels: arrays pass through, paths and encoded bytes are decoded."""
    if image is None or isinstance(image, np.ndarray):
        return image
    return read_pixels(image)


class FeatureTable:
    """Precomputed image features `[N, P, F]` (a 2-D `[N, F]` table, e.g. MM-CoT's ResNet pool
    features, is read as `[N, 1, F]`) and the question id -> row map."""

    def __init__(self, features_path: str | Path, name_map_path: str | Path):
        features_path, name_map_path = Path(features_path), Path(name_map_path)
        if features_path.suffix in (".pth", ".pt"):
            raise DataError(
                f"{features_path}: PyTorch feature files are not read (unpickling runs code); convert "
                f"it once to .npy: {PTH_TO_NPY}"
            )
        for path in (features_path, name_map_path):
            if not path.is_file():
                raise DataError(f"{path}: file not found")
        try:
            table = np.load(features_path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as error:
            raise DataError(f"{features_path}: not a readable .npy array: {error}") from None
        if table.ndim == 2:
            table = table[:, None, :]
        if table.ndim != 3:
            raise DataError(f"{features_path}: features must be [N, P, F] (or [N, F]), got shape {table.shape}")
        name_map = read_json(name_map_path)
        if not isinstance(name_map, dict):
            raise DataError(f"{name_map_path}: must map question ids to rows, got a {type(name_map).__name__}")
        if len(name_map) != table.shape[0]:
            raise DataError(
                f"{name_map_path}: maps {len(name_map)} question ids but {features_path} has "
                f"{table.shape[0]} feature rows"
            )
        self.rows: dict[str, int] = {}
        for qid, row in name_map.items():
            try:
                self.rows[str(qid)] = index = int(row)
            except (TypeError, ValueError):
                raise RecordError(name_map_path, str(qid), f"row {row!r} is not an integer") from None
            if not 0 <= index < table.shape[0]:
                raise RecordError(name_map_path, str(qid), f"row {index} outside the {table.shape[0]} feature rows")
        self.table, self.path = table, features_path
        self.zeros = np.zeros(table.shape[1:], table.dtype)  # MM-CoT's input for a question without image
        self.zeros.flags.writeable = False

    @property
    def shape(self) -> tuple[int, int]:
        """`(P, F)` of one question's features."""
        return tuple(self.table.shape[1:])

    def __getitem__(self, qid: str) -> np.ndarray:
        """`[P, F]` features of `qid` (a read-only view); zeros when it has no image."""
        row = self.rows.get(str(qid))
        return self.zeros if row is None else self.table[row]


def check_image(image: str | Path | bytes, file: str | Path, record: str) -> None:
    """RecordError naming `file` and `record` when `image` (a file or encoded bytes) is not a
    readable picture: a quick check of its structure and checksums, not a full decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image) if isinstance(image, bytes) else image) as opened:
            opened.verify()
    except Exception as error:  # PIL raises many kinds (SyntaxError, OSError, struct.error ...)
        what = "image bytes" if isinstance(image, bytes) else f"image {image}"
        raise RecordError(file, record, f"{what} is not a readable image: {error}") from None
