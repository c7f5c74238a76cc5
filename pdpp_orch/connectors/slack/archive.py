"""The on-disk archive the dump refreshes and the emit phase reads: slackdump's SQLite file."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import platformdirs

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channels (id TEXT PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    channel TEXT NOT NULL, ts TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (channel, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS channel_sync (channel TEXT PRIMARY KEY, latest_ts TEXT) WITHOUT ROWID;
"""


def archive_path() -> Path:
    """$SLACK_ARCHIVE, else the archive in the user's cache directory."""
    configured = os.environ.get("SLACK_ARCHIVE")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("pdpp-orch")) / "slack" / "archive.sqlite"


class Archive:
    """The on-disk dump: what slackdump's SQLite file is to the original connector."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    def replace_inventory(self, table: str, rows: list[tuple[str, bytes]]) -> None:
        """A fresh complete listing replaces the old one, so deleted users/channels go too."""
        with self._transaction():
            self.db.execute(f"DELETE FROM {table}")
            self.db.executemany(f"INSERT INTO {table} (id, data) VALUES (?, ?)", rows)

    def watermark(self, channel: str) -> str | None:
        """The newest ts archived for `channel` (None before its first complete dump)."""
        row = self.db.execute("SELECT latest_ts FROM channel_sync WHERE channel = ?", (channel,)).fetchone()
        return None if row is None else row[0]

    def put_history(self, channel: str, rows: list[tuple[str, str, bytes]], latest_ts: str | None) -> None:
        """A channel's complete refresh and its new watermark, atomically."""
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO messages (channel, ts, data) VALUES (?, ?, ?)", rows)
            self.db.execute(
                "INSERT OR REPLACE INTO channel_sync (channel, latest_ts) VALUES (?, ?)", (channel, latest_ts)
            )

    def ids(self, table: str) -> list[str]:
        """The ids in inventory `table`, sorted."""
        return [r[0] for r in self.db.execute(f"SELECT id FROM {table} ORDER BY id")]

    def rows(self, table: str) -> Iterator[tuple[str, bytes]]:
        """`(id, JSON)` of inventory `table`, by id."""
        yield from self.db.execute(f"SELECT id, data FROM {table} ORDER BY id")

    def messages(self) -> Iterator[tuple[str, str, bytes]]:
        """`(channel, ts, JSON)` of every archived message, by channel then ts."""
        yield from self.db.execute("SELECT channel, ts, data FROM messages ORDER BY channel, ts")

    def _transaction(self) -> sqlite3.Connection:
        self.db.execute("BEGIN")
        return self.db  # its context manager commits or rolls back
