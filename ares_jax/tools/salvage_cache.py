"""Save what a damaged Teacher cache still holds: `python -m ares_jax.tools.salvage_cache WORKDIR`.

Reads every reply of `WORKDIR/teacher_cache.sqlite` that SQLite can still read (the whole table
when it can, else row by row, skipping damaged pages), writes them into a fresh cache, and puts
that in the old one's place; the damaged file is kept beside it as
`teacher_cache.sqlite.damaged-<time>`. A resumed run then asks the Teacher only for the replies
that were lost. Prints how many were saved and how many lost (when the damaged file still says
how many it held).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from ares_jax.teacher.cache import CACHE_FILE, ROW_COLUMNS, TeacherCache

COLUMNS = ", ".join(ROW_COLUMNS)
SMALLEST_ROW = 32  # bytes: rowids to try when the table cannot say how far it goes


def _valid(row) -> bool:
    key, kind, reply, tokens_in, tokens_out, created, writes = row
    return (
        isinstance(key, str)
        and isinstance(kind, str)
        and isinstance(reply, str)
        and all(isinstance(n, int) for n in (tokens_in, tokens_out, writes))
        and isinstance(created, float)
    )


def readable_rows(path: Path) -> tuple[list[tuple], int | None]:
    """(the rows SQLite can still read, how many the file says it held or None)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db.execute("PRAGMA query_only=1")
    except sqlite3.DatabaseError:
        return [], None
    held = None
    try:
        held = db.execute("SELECT COUNT(*) FROM replies INDEXED BY sqlite_autoindex_replies_1").fetchone()[0]
    except sqlite3.DatabaseError:
        pass
    try:
        rows = db.execute(f"SELECT {COLUMNS} FROM replies").fetchall()
    except sqlite3.DatabaseError:  # a damaged page: row by row, around it
        try:
            last = db.execute("SELECT MAX(rowid) FROM replies").fetchone()[0] or 0
        except sqlite3.DatabaseError:
            last = os.path.getsize(path) // SMALLEST_ROW
        rows = []
        for rowid in range(1, last + 1):
            try:
                row = db.execute(f"SELECT {COLUMNS} FROM replies WHERE rowid = ?", (rowid,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            if row is not None:
                rows.append(row)
    db.close()
    return [row for row in rows if _valid(row)], held


def salvage(workdir: Path) -> tuple[int, int | None, Path]:
    """Replaces `workdir`'s cache by a fresh one holding every readable reply; returns (saved,
    lost or None when unknown, where the damaged file now is)."""
    path = Path(workdir) / CACHE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    rows, held = readable_rows(path)
    fresh = path.with_name(CACHE_FILE + ".salvaging")
    for leftover in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        leftover.unlink(missing_ok=True)
    cache = TeacherCache(fresh)
    cache.restore_rows(rows)
    cache.close()
    damaged = path.with_name(f"{CACHE_FILE}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):  # the damaged file and its journal, kept side by side
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{damaged}{suffix}")
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    os.replace(fresh, path)
    saved = len({row[0] for row in rows})
    return saved, None if held is None else max(held - saved, 0), damaged


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ares_jax.tools.salvage_cache WORKDIR", file=sys.stderr)
        return 2
    try:
        saved, lost, damaged = salvage(Path(argv[0]))
    except FileNotFoundError as error:
        print(f"salvage_cache: {error}", file=sys.stderr)
        return 2
    lost_text = f"{lost} lost" if lost is not None else "an unknown number lost (the file no longer says how many)"
    print(
        f"salvage_cache: {saved} replies saved into {Path(argv[0]) / CACHE_FILE}, {lost_text}; "
        f"the damaged file is {damaged}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
