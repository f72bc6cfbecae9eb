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
        except sqlite3.DatabaseError as error:
            raise ValueError(f"Teacher cache {self.path} is not a readable SQLite database: {error}") from None

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

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM replies").fetchone()[0]
