"""Reading dataset files: an error that names the file and the record, or (when the run asks to
skip bad records) a warning and a count."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable


class DataError(ValueError):
    """A dataset file that cannot be used; the message names the file."""


class RecordError(DataError):
    """One bad record; the message names the file and the record."""

    def __init__(self, file: str | Path, record: str, reason: str):
        self.file, self.record, self.reason = file, record, reason
        super().__init__(f"{file}: record {record!r}: {reason}")


@dataclasses.dataclass
class BadRecords:
    """What a loader does with a bad record: raise it (`skip=False`), or warn through `log` and
    count it. A missing or unreadable *file* is never skipped: that is a broken dataset."""

    skip: bool = False
    log: Callable[[str], None] = print
    skipped: int = 0

    def __call__(self, error: RecordError) -> None:
        if not self.skip:
            raise error
        self.skipped += 1
        self.log(f"warning: skipped bad record: {error}")


def read_json(path: Path):
    """The parsed JSON file at `path`; DataError naming it when missing or malformed."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON: {error}") from None


def optional_folder(path, what: str) -> Path | None:
    """`path` as a folder that must exist, or None when not given ("" or None)."""
    if not path:
        return None
    if not Path(path).is_dir():
        raise DataError(f"{path}: {what} not found")
    return Path(path)
