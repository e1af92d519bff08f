"""The SQLite store a study writes to: one ``study.db`` file in the study's output directory.

Contract (shared by any future backend):

* every public write method is one transaction: it happens entirely or not at all;
* runs are kept in insertion order; adding a run that exists leaves it untouched;
* a finished run (status in :data:`FINISHED`) is immutable: it takes no more epochs and cannot be
  finished again;
* a finished run may carry one kernel (a float32 array), written in the same transaction;
* dicts are stored as standard JSON text with sorted keys (tuples come back as lists). A
  non-finite number (a diverged run's loss) is written as the string ``"NaN"``,
  ``"Infinity"`` or ``"-Infinity"``, which SQLite's ``json_extract`` reads, and metrics read
  back as the float (a store written before this, with JSON's non-standard ``NaN`` token,
  still reads). In SQL such a value is text: aggregate over the numbers alone, e.g.
  ``avg(x) FILTER (WHERE typeof(x) = 'real')`` with ``x = json_extract(metrics, '$.loss')``
  (SQLite's ``avg`` counts the text ``'NaN'`` as 0).

Durability: WAL journal with ``synchronous=NORMAL`` while a store is open for writing. A killed
process loses nothing committed; a power cut may lose the last transactions, but the file stays
consistent in both cases.

Files: a new store is made whole (schema written) under a temporary name and linked into place,
so ``study.db`` is never an empty file that a kill left behind: an empty or unreadable
``study.db`` is damage, named and never written to. Closing a writer returns the file to a
rollback journal, so that a finished store is one file that read-only commands open without
creating ``-wal``/``-shm`` files beside it; a killed writer's WAL stays until the next writer.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from reglab.errors import ConfigError, DataError, StoreError
from reglab.storage.lock import unheld
from reglab.storage.records import FINISHED, QUEUED, RUNNING, STATUSES, RunRecord

DB_NAME = "study.db"
#: where the study's own record lives, as errors name it
_STUDY_PLACE = "the study's record (table study, column canonical_json)"
#: SQLite's rollback journal beside the store (a hot one: a write a kill interrupted)
_JOURNAL = "-journal"
#: the meta key under which the store keeps the runs it finished as copies (run -> source)
COPIES_META = "copies"
SCHEMA_VERSION = 1

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS study (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        fingerprint TEXT NOT NULL,
        canonical_json TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        variant TEXT NOT NULL,
        point TEXT NOT NULL,
        seed INTEGER NOT NULL,
        population TEXT NOT NULL,
        hyperparameters TEXT NOT NULL,
        status TEXT NOT NULL,
        best_epoch INTEGER,
        stopped_epoch INTEGER,
        epochs_run INTEGER NOT NULL DEFAULT 0,
        metrics TEXT NOT NULL DEFAULT '{}',
        wall_time REAL,
        error TEXT,
        regime TEXT NOT NULL DEFAULT '{}')""",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
    """CREATE TABLE IF NOT EXISTS epochs (
        run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
        epoch INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        PRIMARY KEY (run_id, epoch))""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # One kernel per finished run (the first weight layer's, for the report's histograms),
    # little-endian float32 bytes in C order.
    """CREATE TABLE IF NOT EXISTS kernels (
        run_id TEXT PRIMARY KEY REFERENCES runs (run_id) ON DELETE CASCADE,
        layer TEXT NOT NULL,
        shape TEXT NOT NULL,
        data BLOB NOT NULL)""",
)

_RUN_FIELDS = (
    "run_id", "variant", "point", "seed", "population", "hyperparameters", "status",
    "best_epoch", "stopped_epoch", "epochs_run", "metrics", "wall_time", "error", "regime",
)  # fmt: skip
#: columns added to ``runs`` after schema version 1 was first written, with their default:
#: a store from before gets them when opened for writing (ALTER TABLE), and reads them as
#: the default when opened read-only, so that old stores stay readable and resumable
_ADDED_RUN_COLUMNS = {"regime": "TEXT NOT NULL DEFAULT '{}'"}
_JSON_FIELDS = ("point", "hyperparameters", "metrics", "regime")
_NUMBER_FIELDS = {
    "seed": int, "best_epoch": int, "stopped_epoch": int, "epochs_run": int, "wall_time": float,
}  # fmt: skip
_RUN_COLUMNS = ", ".join(_RUN_FIELDS)
#: how a read selects each column when the store lacks one of _ADDED_RUN_COLUMNS
_DEFAULT_SELECT = {"regime": "'{}' AS regime"}


#: a non-finite float as the store writes it (standard JSON has no token for one)
_NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name in :data:`_NON_FINITE`."""
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(item) for item in value]
    return value


def _dumps(value: Any) -> str:
    """Standard JSON text with sorted keys: the one way this store writes structured values
    (non-finite floats by name, see the module docstring)."""
    return json.dumps(_finite_json(value), sort_keys=True, allow_nan=False)


def _run_values(run: RunRecord) -> dict[str, Any]:
    """The row of ``runs`` for ``run``: JSON text for dicts, plain ints and floats for numbers
    (so that, e.g., numpy integers from the engine bind)."""
    values = {name: getattr(run, name) for name in _RUN_FIELDS}
    for name in _JSON_FIELDS:
        values[name] = _dumps(values[name])
    for name, kind in _NUMBER_FIELDS.items():
        if values[name] is not None:
            values[name] = kind(values[name])
    return values


def _record_from_row(row: tuple, path: Path) -> RunRecord:
    values = dict(zip(_RUN_FIELDS, row))
    for name in _JSON_FIELDS:
        values[name] = _parsed_object(path, values[name],
                                      f"run {values['run_id']!r}, column {name}",
                                      numbers=name == "metrics")
    return RunRecord(**values)


#: what to do about JSON in the store that reglab did not write
_CHANGED_OUTSIDE = ("The store was changed outside reglab: restore it from a copy, or run the "
                    "study again with --restart, which starts it over.")


def _parsed(path: Path, text, place: str):
    """``json.loads(text)``; a StoreError naming the file and the place where the store's
    JSON was damaged (SQLite cannot see it: the file itself is sound)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        raise StoreError(f"{path}: {place} is damaged (not the JSON reglab wrote: {error}). "
                         f"{_CHANGED_OUTSIDE}") from None


def _parsed_object(path: Path, text, place: str, numbers: bool = False) -> dict:
    """:func:`_parsed` of a JSON object (with ``numbers``: each value a number or null, as
    reglab writes metrics); a StoreError naming the place where it is something else."""
    value = _parsed(path, text, place)
    wrong = None
    if not isinstance(value, dict):
        wrong = f"JSON {type(value).__name__}, where reglab writes an object"
    elif numbers:
        for key, item in value.items():
            if isinstance(item, str) and item in _NON_FINITE:
                value[key] = item = _NON_FINITE[item]
            if item is not None and (isinstance(item, bool) or not isinstance(item, (int, float))):
                wrong = f"{key!r} is {item!r}, where reglab writes a number"
                break
    if wrong is not None:
        raise StoreError(f"{path}: {place} is damaged ({wrong}). {_CHANGED_OUTSIDE}")
    return value


def _stale(temporary: Path) -> bool:
    """Whether a new store's temporary file was left by a process that is gone (its pid is in
    the name) more than a minute ago."""
    try:
        pid = int(temporary.name.split(".")[-2])  # .study.db.<pid>.tmp[-journal]
        os.kill(pid, 0)
        return False  # its maker is alive: it is still being written
    except ProcessLookupError:
        pass
    except (ValueError, IndexError, OSError):
        return False
    try:
        return time.time() - temporary.stat().st_mtime > 60
    except OSError:
        return False


def _free_bytes(directory: Path) -> int | None:
    """The bytes free on the device of ``directory``, or None where that cannot be read."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _readable_intact(path: Path) -> bool:
    """Whether ``path`` opens read-only as an intact SQLite database with reglab's tables:
    a store SQLite could not open for writing (its directory refuses the journal) is then
    no damaged one."""
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1",
                                                uri=True)) as connection:
            ok = connection.execute("PRAGMA quick_check").fetchone()
            tables = {row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return False
    return ok == ("ok",) and "runs" in tables


class SQLiteStore:
    """A study's runs, epochs and metadata in ``<directory>/study.db``.

    Args:
        directory: The study's output directory; created if missing.

    Example:
        >>> import tempfile
        >>> store = SQLiteStore(tempfile.mkdtemp())
        >>> store.init_study("abc123", '{"name": "demo"}')
        True
        >>> store.add_runs([RunRecord("base/seed=0", "base", {}, 0, "p0", {})])
        >>> store.mark_running(["base/seed=0"])
        >>> store.record_epochs([("base/seed=0", 0, {"loss": 0.5})])
        >>> store.epochs("base/seed=0")
        [{'epoch': 0, 'loss': 0.5}]
        >>> store.close()
    """

    def __init__(self, directory, read_only: bool = False):
        self.directory = Path(directory)
        self.read_only = read_only
        #: the columns reads select (a read-only store from before a column reads its default)
        self._select = _RUN_COLUMNS
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(
                f"SQLiteStore: 'directory' must be a directory. Got {str(self.directory)!r}, "
                "which is a file."
            )
        self.path = self.directory / DB_NAME
        if self.path.is_dir():
            raise StoreError(
                f"{self.path}: expected the study's store, a file. Got a directory. Give "
                "another --out, or move the directory away.")
        if read_only:
            if not self.path.is_file():
                raise StoreError(
                    f"{self.directory}: not a study directory (it has no {DB_NAME}). Give the "
                    "directory a `reglab run` wrote (its --out), e.g. runs/<study name>.")
        else:
            self.make_directory(self.directory)
        # isolation_level=None: no implicit transactions; each write opens its own (see _write).
        self._conn: sqlite3.Connection | None = None
        try:
            if read_only:  # never writes: a read-only connection, and no schema created
                self._roll_back_killed_write()
                self._conn = self._open_read_only()
            else:
                if self.path.exists():
                    self._probe()  # a damaged store is named, never written to
                else:
                    self._create()
                self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as error:
            raise self._unusable(error) from None
        try:
            if not read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._create_schema()
                self._select = _RUN_COLUMNS  # every column is there now
        except sqlite3.DatabaseError as error:
            self.close()
            raise self._unusable(error) from None
        except BaseException:
            self.close()
            raise

    @staticmethod
    def make_directory(directory: Path) -> None:
        """Creates a study directory (and its parents), or raises :class:`StoreError` saying
        why not."""
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            in_the_way = isinstance(error, (NotADirectoryError, FileExistsError))
            raise StoreError(
                f"{directory}: cannot create the study directory: {error.strerror}"
                f"{' (a file is in the way)' if in_the_way else ''}. Choose another --out."
            ) from None

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection to a store whose schema was checked. On a damaged store it
        raises, removing the empty ``-wal``/``-shm`` files its own attempt made (SQLite makes
        them to read a WAL-mode file), so that the directory is left as it was found."""
        sidecars = [Path(f"{self.path}{suffix}") for suffix in ("-wal", "-shm")]
        present = [sidecar.exists() for sidecar in sidecars]
        if not self.path.stat().st_size:  # SQLite would delete a WAL beside it on opening
            raise StoreError(
                f"{self.path}: not a usable reglab store (an empty file, 0 bytes; reglab "
                "never leaves one). It is left as it is: move it away (or give another --out) "
                "to run the study afresh; a copy of a store from before the damage can "
                "replace it.")
        conn = None
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                   timeout=30.0, isolation_level=None)
            self._check_schema(conn)
            return conn
        except (sqlite3.DatabaseError, DataError):  # damage: not a store any writer can use
            if conn is not None:
                conn.close()
            self._remove_made(sidecars, present)
            raise
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _remove_made(self, sidecars: list[Path], present: list[bool]) -> None:
        """Removes the empty ``-wal`` and the ``-shm`` that a failed read of a damaged store
        made, while no ``reglab run`` holds the directory (a writer's are never touched)."""
        with unheld(self.directory) as free:
            if not free:
                return
            for sidecar, was_there in zip(sidecars, present):
                try:  # only what this attempt made, and never a log with frames in it
                    if not was_there and (sidecar == sidecars[1] or not sidecar.stat().st_size):
                        sidecar.unlink()
                except OSError:
                    pass

    def _probe(self) -> None:
        """Reads an existing store read-only before it is opened for writing (and removes
        new stores' temporaries that killed processes left)."""
        self._roll_back_killed_write()
        try:
            conn = self._open_read_only()
            try:
                row = conn.execute("SELECT canonical_json FROM study").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as error:
            raise self._unusable(error) from None
        if row is not None:  # what a resume compares first: damage named before any write
            _parsed_object(self.path, row[0], _STUDY_PLACE)
        self._remove_stale_temporaries()

    def _roll_back_killed_write(self) -> None:
        """Rolls back the write of a process killed while the store was in a rollback
        journal (as it is while a writer switches it to WAL on opening and back on closing):
        its ``study.db-journal`` is hot, and SQLite rolls it back on the next read-write
        opening, which a read-only connection cannot do (it fails as if the file were
        read-only). The rollback restores the store as it was before that write, as any
        SQLite program opening it would; SQLite leaves a journal alone while its writer
        lives. Where the store cannot be written, the reading that follows says so."""
        journal = Path(f"{self.path}{_JOURNAL}")
        try:
            if not journal.is_file() or not journal.stat().st_size or \
                    not self.path.stat().st_size:
                return
        except OSError:
            return
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                with unheld(self.directory) as free:
                    if free:  # one file again, as a closing writer leaves it (a kill while
                        conn.execute("PRAGMA busy_timeout=0")  # it switched to WAL leaves
                        conn.execute("PRAGMA journal_mode=DELETE")  # a WAL-mode header)
            finally:
                conn.close()
        except sqlite3.Error:
            pass  # damaged or not writable here: named by the reading that follows

    def _remove_stale_temporaries(self, own: str | None = None) -> None:
        for leftover in self.directory.glob(f".{DB_NAME}.*.tmp*"):
            if (own is not None and leftover.name.startswith(own)) or _stale(leftover):
                leftover.unlink(missing_ok=True)

    def _create(self) -> None:
        """Writes a new store's schema under a temporary name and links it into place (never
        over a store another process made meanwhile), so that a kill leaves no empty
        ``study.db``; a temporary file left by a kill is removed by the next attempt."""
        temporary = self.directory / f".{DB_NAME}.{os.getpid()}.tmp"
        self._remove_stale_temporaries(own=temporary.name)
        try:
            conn = sqlite3.connect(temporary, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)",
                             (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            finally:
                conn.close()
            with open(temporary, "rb") as file:
                os.fsync(file.fileno())
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError:  # a file system without hard links (`reglab run` holds the
                if not self.path.exists():  # study's lock here: no other run creates it)
                    os.replace(temporary, self.path)
        except (sqlite3.Error, OSError) as error:
            raise StoreError(
                f"{self.directory}: cannot create the study's store there "
                f"({getattr(error, 'strerror', None) or error}). Give an --out where this "
                "user may write.") from None
        finally:
            try:
                temporary.unlink(missing_ok=True)
            except OSError:
                pass  # a directory that refused the store refuses this too: nothing was made

    def _unusable(self, error: sqlite3.Error) -> StoreError:
        """The error for a ``study.db`` SQLite cannot use; the file is left as it is."""
        journal = Path(f"{self.path}{_JOURNAL}")
        read_only = "readonly" in str(error) or "read-only" in str(error)
        if read_only and journal.is_file():
            return StoreError(
                f"{self.path}: the store holds the unfinished write of a killed process "
                f"({journal.name}), which only a process that may write here can roll back "
                f"({error}). Run the same command where the directory can be written (a "
                "copy of the directory, journal included); the rollback loses nothing that "
                "was committed.")
        # "unable to open": SQLite could not open it for writing, which an intact file in a
        # directory that refuses its journal also gives
        cannot_open = "unable to open" in str(error)
        if read_only or (cannot_open and _readable_intact(self.path)):  # healthy
            return StoreError(
                f"{self.path}: cannot write to the store ({error}): the file or its directory "
                "is read-only here. `show` and `ls` read it as it is; to go on "
                "training, run where it can be written (a copy of the directory).")
        failed_write = "disk I/O error" in str(error) or "is full" in str(error)
        if failed_write and _readable_intact(self.path):  # a full disk's 'disk I/O error'
            # at open: no damage to move away from
            free = _free_bytes(self.directory)
            room = "" if free is None else f"{free:,} bytes free on its device; "
            return StoreError(
                f"{self.path}: cannot write to the store ({error}; {room}the disk may be "
                "full). The store reads intact and is left as it is: free some space and "
                "run the same command again, and the study goes on from its finished runs.")
        return StoreError(
            f"{self.path}: not a usable reglab store ({error}). It is left as it is: move it "
            "away (or give another --out) to run the study afresh; a copy of a store from "
            "before the damage can replace it.")

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ConfigError(f"SQLiteStore({str(self.directory)!r}): the store is closed.")
        return self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so two writers queue instead of
        failing on a lock upgrade halfway through.
        """
        conn = self._connection()
        if self.read_only:
            raise StoreError(f"{self.path}: opened read-only; this command does not write.")
        conn.execute("BEGIN IMMEDIATE")
        with conn:  # commits on success, rolls back on any exception
            yield conn

    def _create_schema(self) -> None:
        with self._write() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for column, declaration in _ADDED_RUN_COLUMNS.items():
                if column not in present:  # a store written before the column existed
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {declaration}")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise DataError(
                    f"{self.path}: schema version must be {SCHEMA_VERSION}. Got {row[0]!r}. "
                    "It was written by another version of reglab."
                )

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        """For a read-only store: the tables are there, at this version (reads every table's
        first page, so that a truncated or garbled file is found here)."""
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
        except sqlite3.OperationalError as error:
            raise sqlite3.DatabaseError(f"no reglab tables: {error}") from None
        if row is None or row[0] != SCHEMA_VERSION:
            raise DataError(
                f"{self.path}: schema version must be {SCHEMA_VERSION}. Got "
                f"{None if row is None else row[0]!r}. It was written by another version of "
                "reglab.")
        found = conn.execute("PRAGMA quick_check").fetchall()
        if found != [("ok",)]:  # SQLite reports what it finds wrong as rows, not errors
            raise sqlite3.DatabaseError(
                f"{found[0][0] if found else 'no answer to the integrity check'}"
                f"{f' (and {len(found) - 1} more problems)' if len(found) > 1 else ''}")
        present = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        self._select = ", ".join(name if name in present or name not in _DEFAULT_SELECT
                                 else _DEFAULT_SELECT[name] for name in _RUN_FIELDS)

    def close(self) -> None:
        """Closes the connection (idempotent); committed data is already on disk. A writer
        first returns the file to a rollback journal (a checkpoint, then one file), unless
        another connection has it open: then the WAL stays for the last one."""
        if self._conn is not None:
            if not self.read_only:
                try:
                    self._conn.execute("PRAGMA busy_timeout=0")
                    self._conn.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.Error:
                    pass  # in use elsewhere (or already closing down): WAL it stays
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.directory)!r})"

    # -- the study ------------------------------------------------------------------------

    def init_study(self, fingerprint: str, canonical_json: str, *, restart: bool = False,
                   resumable: tuple[str, ...] = (), grows=None) -> bool:
        """Records the study, or recognises it on resume: the same fingerprint, a study
        whose only changes are among the dotted keys ``resumable`` (its description, a
        tuning's budget), or one that ``grows(stored canonical JSON, parsed)`` accepts (more
        seeds or variants: :mod:`reglab.study.extension`), which is then recorded in the
        stored one's place; its runs stay.

        Returns:
            True when the study was stored fresh (first time, or ``restart=True``, which deletes
            everything first); False when the same study is already here (resume).

        Raises:
            ConfigError: The directory holds a study with another fingerprint and ``restart`` is
                False.
        """
        try:
            json.loads(canonical_json)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{self}.init_study: 'canonical_json' must be JSON text. "
                f"Got {str(canonical_json)[:80]!r}."
            ) from None
        with self._write() as conn:
            row = conn.execute("SELECT fingerprint, canonical_json FROM study").fetchone()
            if row is not None and not restart:
                if row[0] == fingerprint:
                    return False
                changes = _changed_keys(row[1], canonical_json, limit=None)
                resumed = changes and set(changes) <= set(resumable)  # the same study
                if resumed or (grows is not None and grows(_json_or_none(row[1]))):
                    conn.execute("UPDATE study SET fingerprint = ?, canonical_json = ?",
                                 (fingerprint, canonical_json))
                    return False
                changed = _changed_keys(row[1], canonical_json)
                raise ConfigError(
                    f"{self.directory}: holds another study (fingerprint {row[0][:12]}…, "
                    f"name {_study_name(row[1])!r}"
                    + (f"; changed: {', '.join(changed)}" if changed else "")
                    + "). Run with --restart to start over, or use another --out directory"
                    + (" (more seeds, variants or sweep values, with nothing else changed, "
                       "would go on from the runs stored)." if grows is not None else ".")
                )
            for table in ("kernels", "epochs", "runs", "meta", "study"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM sqlite_sequence WHERE name = 'runs'")
            conn.execute(
                "INSERT INTO study (id, fingerprint, canonical_json) VALUES (1, ?, ?)",
                (fingerprint, canonical_json),
            )
        return True

    def study(self) -> tuple[str, dict] | None:
        """The stored study as ``(fingerprint, parsed canonical JSON)``, or None."""
        row = self._connection().execute("SELECT fingerprint, canonical_json FROM study").fetchone()
        return None if row is None else (row[0], _parsed_object(self.path, row[1],
                                                                _STUDY_PLACE))

    # -- runs -----------------------------------------------------------------------------

    def add_runs(self, runs: Iterable[RunRecord]) -> None:
        """Inserts queued runs; runs whose ``run_id`` is already stored are left untouched."""
        with self._write() as conn:
            for run in runs:
                if run.status != QUEUED:
                    raise DataError(
                        f"{self}.add_runs: run {run.run_id!r} must be 'queued'. Got {run.status!r}."
                    )
                conn.execute(
                    f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS}) "
                    f"VALUES ({', '.join(':' + name for name in _RUN_FIELDS)})",
                    _run_values(run),
                )

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        """Removes runs with their epochs and kernels (a tuning's confirmation of a trial
        that is no longer the chosen one)."""
        ids = [(run_id,) for run_id in run_ids]
        with self._write() as conn:
            for table in ("kernels", "epochs", "runs"):
                conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)

    def run_counts(self) -> dict[str, int]:
        """How many runs the store holds by status (read without parsing them: a damaged
        run record is counted too)."""
        rows = self._connection().execute(
            "SELECT status, count(*) FROM runs GROUP BY status").fetchall()
        return {str(status): int(count) for status, count in rows}

    def runs(self, status: str | tuple | list | None = None) -> list[RunRecord]:
        """The runs in insertion order, optionally only those with the given status(es)."""
        sql = f"SELECT {self._select} FROM runs"
        params: tuple = ()
        if status is not None:
            params = (status,) if isinstance(status, str) else tuple(status)
            unknown = [s for s in params if s not in STATUSES]
            if unknown:
                raise ConfigError(
                    f"{self}.runs: 'status' must be among {', '.join(STATUSES)}. "
                    f"Got {unknown[0]!r}."
                )
            if not params:
                return []
            sql += f" WHERE status IN ({', '.join('?' * len(params))})"
        rows = self._connection().execute(sql + " ORDER BY seq", params).fetchall()
        return [_record_from_row(row, self.path) for row in rows]

    def run(self, run_id: str) -> RunRecord:
        """One run by id; DataError if it is not stored."""
        row = (
            self._connection()
            .execute(f"SELECT {self._select} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        if row is None:
            raise DataError(f"{self}.run: no run with this id. Got {run_id!r}.")
        return _record_from_row(row, self.path)

    def _status(self, conn: sqlite3.Connection, where: str, run_id: str) -> str:
        row = conn.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise DataError(f"{self}.{where}: no run with this id. Got {run_id!r}.")
        return row[0]

    def mark_running(self, run_ids: Iterable[str]) -> None:
        """Moves queued runs to 'running'; runs in any other status are left as they are."""
        with self._write() as conn:
            for run_id in run_ids:
                if self._status(conn, "mark_running", run_id) == QUEUED:
                    conn.execute("UPDATE runs SET status = ? WHERE run_id = ?", (RUNNING, run_id))

    # -- epochs ---------------------------------------------------------------------------

    def record_epochs(self, rows: Iterable[tuple[str, int, dict]]) -> None:
        """Writes ``(run_id, epoch, metrics)`` rows, for any number of runs, in one transaction.

        Raises:
            DataError: A run is unknown or already finished, an epoch is already recorded, or a
                row is malformed. Nothing of the call is written then.
        """
        with self._write() as conn:
            checked: set[str] = set()
            for row in rows:
                try:
                    run_id, epoch, metrics = row
                except (TypeError, ValueError):
                    raise DataError(
                        f"{self}.record_epochs: each row must be (run_id, epoch, metrics). "
                        f"Got {row!r}."
                    ) from None
                if run_id not in checked:
                    status = self._status(conn, "record_epochs", run_id)
                    if status in FINISHED:
                        raise DataError(
                            f"{self}.record_epochs: run {run_id!r} must not be finished to take "
                            f"epochs. Got status {status!r}. Finished runs are immutable."
                        )
                    checked.add(run_id)
                if not isinstance(metrics, dict) or "epoch" in metrics:
                    raise DataError(
                        f"{self}.record_epochs: metrics of run {run_id!r} must be a dict "
                        f"without an 'epoch' key. Got {metrics!r}."
                    )
                try:
                    conn.execute(
                        "INSERT INTO epochs (run_id, epoch, metrics) VALUES (?, ?, ?)",
                        (run_id, int(epoch), _dumps(metrics)),
                    )
                except sqlite3.IntegrityError:
                    raise DataError(
                        f"{self}.record_epochs: run {run_id!r} already has epoch {epoch!r}."
                    ) from None
            conn.executemany(
                "UPDATE runs SET epochs_run = "
                "(SELECT COUNT(*) FROM epochs WHERE epochs.run_id = runs.run_id) "
                "WHERE run_id = ?",
                [(run_id,) for run_id in checked],
            )

    def epochs(self, run_id: str) -> list[dict]:
        """The run's epochs in order, each ``{'epoch': e, **metrics}``."""
        rows = (
            self._connection()
            .execute("SELECT epoch, metrics FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,))
            .fetchall()
        )
        return [{"epoch": epoch, **_parsed_object(self.path, metrics,
                                                  f"run {run_id!r}, epoch {epoch}, column "
                                                  "metrics", numbers=True)}
                for epoch, metrics in rows]

    # -- finishing and resuming -----------------------------------------------------------

    def finish_runs(
        self,
        finished: Iterable[RunRecord],
        kernels: Mapping[str, tuple[str, np.ndarray]] | None = None,
    ) -> None:
        """Stores final outcomes (status, epochs, metrics, wall time, error) in one transaction.

        Only the outcome fields are written; a run's identity fields never change.

        Args:
            finished: The runs' final records.
            kernels: Optional ``run_id -> (layer name, array)`` for runs of this call: one
                weight array per run, stored as float32 (see :meth:`kernel`).

        Raises:
            DataError: A record's status is not final, its run is unknown, or the run is already
                finished (finished runs are immutable). Nothing of the call is written then.
        """
        finished_ids: set[str] = set()
        with self._write() as conn:
            for run in finished:
                if run.status not in FINISHED:
                    raise DataError(
                        f"{self}.finish_runs: status of run {run.run_id!r} must be one of "
                        f"{', '.join(FINISHED)}. Got {run.status!r}."
                    )
                current = self._status(conn, "finish_runs", run.run_id)
                if current in FINISHED:
                    raise DataError(
                        f"{self}.finish_runs: run {run.run_id!r} is already finished "
                        f"(status {current!r}) and finished runs are immutable. "
                        f"Got status {run.status!r}."
                    )
                conn.execute(
                    "UPDATE runs SET status = :status, best_epoch = :best_epoch, "
                    "stopped_epoch = :stopped_epoch, epochs_run = :epochs_run, "
                    "metrics = :metrics, wall_time = :wall_time, error = :error "
                    "WHERE run_id = :run_id",
                    _run_values(run),
                )
                finished_ids.add(run.run_id)
            for run_id, (layer, array) in (kernels or {}).items():
                if run_id not in finished_ids:
                    raise DataError(
                        f"{self}.finish_runs: 'kernels' has run {run_id!r}, which is not among "
                        "the runs this call finishes."
                    )
                values = np.ascontiguousarray(array, dtype="<f4")
                conn.execute(
                    "INSERT OR REPLACE INTO kernels (run_id, layer, shape, data) "
                    "VALUES (?, ?, ?, ?)",
                    (run_id, str(layer), json.dumps(list(values.shape)), values.tobytes()),
                )

    def finish_as_copies(self, copies: Mapping[str, str]) -> list[str]:
        """Finishes each unfinished run of ``copies`` (``run_id -> source run_id``) with what its
        source finished with: its epochs, outcome and kernel, in one transaction. Runs whose
        source is not finished yet, and runs already finished, are left as they are. The
        store remembers which runs it finished so (:data:`COPIES_META`, ``run_id -> source``).

        Returns:
            The ids of the runs finished, in the order of ``copies``.

        Raises:
            DataError: A run or a source is unknown. Nothing of the call is written then.
        """
        done = []
        with self._write() as conn:
            for run_id, source in copies.items():
                source_status = self._status(conn, "finish_as_copies", source)
                if self._status(conn, "finish_as_copies", run_id) in FINISHED \
                        or source_status not in FINISHED:
                    continue
                conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
                conn.execute("INSERT INTO epochs (run_id, epoch, metrics) SELECT ?, epoch, "
                             "metrics FROM epochs WHERE run_id = ?", (run_id, source))
                conn.execute(
                    "UPDATE runs SET (status, best_epoch, stopped_epoch, epochs_run, metrics, "
                    "wall_time, error) = (SELECT status, best_epoch, stopped_epoch, epochs_run, "
                    "metrics, wall_time, error FROM runs WHERE run_id = ?) WHERE run_id = ?",
                    (source, run_id))
                conn.execute("INSERT OR REPLACE INTO kernels (run_id, layer, shape, data) "
                             "SELECT ?, layer, shape, data FROM kernels WHERE run_id = ?",
                             (run_id, source))
                done.append(run_id)
            if done:
                row = conn.execute("SELECT value FROM meta WHERE key = ?",
                                   (COPIES_META,)).fetchone()
                noted = {} if row is None else json.loads(row[0])
                noted.update({run_id: copies[run_id] for run_id in done})
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (COPIES_META, _dumps(noted)))
        return done

    def kernel(self, run_id: str) -> tuple[str, np.ndarray] | None:
        """``(layer name, float32 array)`` stored with the finished run, or None."""
        row = (
            self._connection()
            .execute("SELECT layer, shape, data FROM kernels WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        if row is None:
            return None
        layer, shape, data = row
        return layer, np.frombuffer(data, dtype="<f4").reshape(json.loads(shape)).copy()

    def reset_unfinished(self, run_ids: Iterable[str] | None = None) -> list[str]:
        """Running runs go back to queued and lose their epochs: all of them (after a kill), or
        those of ``run_ids`` that are running (to train them again).

        Returns:
            The ids of the runs reset, in insertion order.
        """
        if isinstance(run_ids, str):
            raise ConfigError(f"{self}.reset_unfinished: 'run_ids' must be a list of run ids, "
                              f"not one str. Got {run_ids!r}.")
        wanted = None if run_ids is None else set(run_ids)
        with self._write() as conn:
            reset = [
                row[0]
                for row in conn.execute(
                    "SELECT run_id FROM runs WHERE status = ? ORDER BY seq", (RUNNING,)
                )
                if wanted is None or row[0] in wanted
            ]
            for run_id in reset:
                conn.execute("DELETE FROM epochs WHERE run_id = ?", (run_id,))
                conn.execute(
                    "UPDATE runs SET status = ?, epochs_run = 0 WHERE run_id = ?",
                    (QUEUED, run_id),
                )
        return reset

    # -- metadata -------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Stores a JSON value under ``key`` (versions, wall time per population, device)."""
        if not isinstance(key, str):
            raise ConfigError(f"{self}.set_meta: 'key' must be a str. Got {key!r}.")
        try:
            text = _dumps(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{self}.set_meta: value of {key!r} must be JSON-serialisable. Got {value!r}."
            ) from None
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, text))

    def get_meta(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        row = self._connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else _parsed(self.path, row[0], f"meta {key!r}")


def _json_or_none(text: str):
    """``text`` parsed, or None where it is not JSON."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _changed_keys(stored: str, new: str, limit: int | None = 6) -> list[str]:
    """The dotted keys whose values differ between two studies' canonical JSON (tables
    compared key by key, anything else as a whole), at most ``limit`` (None: all)."""
    try:
        before, after = json.loads(stored), json.loads(new)
    except (TypeError, ValueError):
        return []
    changed: list[str] = []

    def named(items):  # a list of tables with names (the variants): a table by name
        if isinstance(items, list) and items and all(
                isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
            names = [i["name"] for i in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items)), names
        return None, None

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            return
        (by_a, order_a), (by_b, order_b) = named(a), named(b)
        if by_a is not None and by_b is not None:
            for name in [*order_a, *(n for n in order_b if n not in by_a)]:
                where = f"{path}.{name}"
                if name not in by_b or name not in by_a:
                    changed.append(f"{where} ({'removed' if name not in by_b else 'added'})")
                else:
                    walk({k: v for k, v in by_a[name].items() if k != "name"},
                         {k: v for k, v in by_b[name].items() if k != "name"}, where)
            common = [n for n in order_a if n in by_b]
            if common != [n for n in order_b if n in by_a]:
                changed.append(f"{path} (their order)")
        elif a != b:
            changed.append(path or "(the whole study)")

    walk(before, after, "")
    if limit is None or len(changed) <= limit:
        return changed
    return changed[:limit] + [f"{len(changed) - limit} more"]


def _study_name(canonical_json: str) -> str:
    try:
        data = json.loads(canonical_json)
    except ValueError:
        return "?"
    return str(data.get("name", "?")) if isinstance(data, dict) else "?"
