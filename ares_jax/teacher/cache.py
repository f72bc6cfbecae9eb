"""The Teacher's persistent cache: SQLite in the run directory, so a request is paid once.

Keyed by `Request.cache_key` (backend, model, prompt version, content, image hash). Each write
is one SQLite transaction in WAL mode: a `kill -9` mid-write leaves the previous state, and
several processes can write at once (they wait on a busy timeout instead of failing). Only the
reply text and token counts are stored: never a key or a header. `writes` counts how often a
key was written: above 1 means a request was answered (paid) again, which a run should never do.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

CACHE_FILE = "teacher_cache.sqlite"  # in the work directory
ROW_COLUMNS = ("key", "kind", "reply", "tokens_in", "tokens_out", "created", "writes")  # a whole stored reply
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    reply TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    created REAL NOT NULL,
    writes INTEGER NOT NULL DEFAULT 1
)
"""


class TeacherCacheDamaged(RuntimeError):
    """The cache file cannot be read; the message names the salvage command."""


def _damaged(path: Path, detail: str) -> TeacherCacheDamaged:
    return TeacherCacheDamaged(
        f"the Teacher cache {path} is damaged ({detail}); copy every readable reply into a fresh cache with "
        f"`python -m ares_jax.tools.salvage_cache {path.parent}` (the damaged file is kept beside it), then run "
        "the same command again"
    )


class TeacherCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            db.execute(_SCHEMA)
            if "writes" not in [row[1] for row in db.execute("PRAGMA table_info(replies)")]:  # an older cache
                db.execute("ALTER TABLE replies ADD COLUMN writes INTEGER NOT NULL DEFAULT 1")
            problems = [row[0] for row in db.execute("PRAGMA quick_check")]  # damaged pages, at start-up
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as error:
            raise _damaged(self.path, str(error)) from None
        if problems != ["ok"]:
            raise _damaged(self.path, problems[0])

    def _connect(self) -> sqlite3.Connection:
        """This process's connection, opened once (opening one per request cost ~5 ms)."""
        if self._db is None:
            self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        return self._db

    def get(self, key: str) -> str | None:
        row = self._connect().execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, kind: str, reply: str, tokens_in: int, tokens_out: int) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO replies VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO UPDATE SET "
                "reply = excluded.reply, tokens_in = excluded.tokens_in, tokens_out = excluded.tokens_out, "
                "created = excluded.created, writes = writes + 1",
                (key, kind, reply, tokens_in, tokens_out, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def restore_rows(self, rows) -> None:
        """Writes whole rows (values of `ROW_COLUMNS`) as they were (a salvaged cache's), in one
        transaction; a key already here is kept."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            f"INSERT OR IGNORE INTO replies ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})",
            rows,
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]
