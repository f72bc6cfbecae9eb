"""The Teacher's persistent cache: SQLite in the run directory, so a request is paid once.

Keyed by `Request.cache_key` (backend, model, prompt version, content, image hash). Each write
is one SQLite transaction in WAL mode: a `kill -9` mid-write leaves the previous state, and
several processes can write at once (they wait on a busy timeout instead of failing). Only the
reply text and token counts are stored: never a key or a header.
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
    created REAL NOT NULL
)
"""


class TeacherCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._connect() as db:
                db.execute(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise ValueError(f"Teacher cache {self.path} is not a readable SQLite database: {error}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def get(self, key: str) -> str | None:
        db = self._connect()
        try:
            row = db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        finally:
            db.close()
        return None if row is None else row[0]

    def put(self, key: str, kind: str, reply: str, tokens_in: int, tokens_out: int) -> None:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (key, kind, reply, tokens_in, tokens_out, time.time()),
            )
            db.execute("COMMIT")
        finally:
            db.close()

    def __len__(self) -> int:
        db = self._connect()
        try:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
        finally:
            db.close()
