"""Where a study keeps its runs: a small storage interface, SQLite by default (no torch)."""

from reglab.storage.lock import StudyLock
from reglab.storage.records import FINISHED, STATUSES, RunRecord
from reglab.storage.sqlite_store import DB_NAME, SCHEMA_VERSION, SQLiteStore

__all__ = ["DB_NAME", "FINISHED", "SCHEMA_VERSION", "STATUSES", "RunRecord", "SQLiteStore",
           "StudyLock"]
