"""Persistent job state in one SQLite file: runs and their jobs (claims, leases, outcomes).

The cross-run page memory in the same file lives in page_memory.py.

Several processes (and threads) open the same file; every change that reads before it writes runs in one
`BEGIN IMMEDIATE` transaction, so no two workers ever claim the same job. A claim is a lease: a worker
that dies stops renewing it, and once it expires the job is claimed again.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from ..errors import ConfigError, OutputError
from ..models import DocRef
from .batch_ledger import LEDGER_SCHEMA, BatchLedger, forget_runs
from .page_memory import PageMemory, PageRecord, from_json, to_json, upsert_page

__all__ = ["JobState", "RunStatus", "Job", "Outcome", "RunInfo", "JobQueue", "SCHEMA_VERSION"]

SCHEMA_VERSION = 2  # 2: the Batch API's tables (batch_ledger.py)
_APPLICATION_ID = 0x44_49_4A_51  # "DIJQ" in the file header: this is a document-it job database
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, source TEXT NOT NULL, options TEXT NOT NULL,
       status TEXT NOT NULL, started REAL NOT NULL, finished REAL)""",
    """CREATE TABLE IF NOT EXISTS jobs (run_id INTEGER NOT NULL, key TEXT NOT NULL, url TEXT NOT NULL,
       title TEXT NOT NULL, topic TEXT NOT NULL, note TEXT NOT NULL, depth INTEGER NOT NULL, state TEXT NOT NULL,
       attempts INTEGER NOT NULL DEFAULT 0, lease_until REAL, worker TEXT, result TEXT,
       change TEXT NOT NULL DEFAULT '', change_note TEXT NOT NULL DEFAULT '', seq INTEGER NOT NULL,
       PRIMARY KEY (run_id, key))""",
    "CREATE INDEX IF NOT EXISTS jobs_by_order ON jobs (run_id, state, depth, seq)",
    """CREATE TABLE IF NOT EXISTS pages (source TEXT NOT NULL, key TEXT NOT NULL, url TEXT NOT NULL,
       topic TEXT NOT NULL, content_hash TEXT NOT NULL, etag TEXT, last_modified TEXT, result TEXT,
       links TEXT NOT NULL, headings TEXT NOT NULL, words INTEGER NOT NULL, analysed_at REAL NOT NULL,
       removed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (source, key))""",
    """CREATE TABLE IF NOT EXISTS topics (source TEXT NOT NULL, topic TEXT NOT NULL, fingerprint TEXT NOT NULL,
       synthesis TEXT NOT NULL, PRIMARY KEY (source, topic))""",
    """CREATE TABLE IF NOT EXISTS markdown (source TEXT NOT NULL, key TEXT NOT NULL, markdown TEXT NOT NULL,
       PRIMARY KEY (source, key))""",
    *LEDGER_SCHEMA,
)
_RUN_COLUMNS = "id, source, options, status, started, finished"
_JOB_COLUMNS = "run_id, key, url, title, topic, note, depth, attempts, worker"
# two queries rather than one with OR, so each walks the (run_id, state, depth, seq) index instead of sorting
_EXPIRED_JOB = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ? AND state = 'in_progress' AND lease_until < ? "
                "{kept} ORDER BY depth, seq LIMIT ?")
_PENDING_JOB = (f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ? AND state = 'pending' "
                "{kept} ORDER BY depth, seq LIMIT ?")
# only the jobs that waited for a batch (their download kept): a run's later rounds take those alone
_KEPT = "AND key IN (SELECT key FROM kept_pages WHERE kept_pages.run_id = jobs.run_id)"
_TAKE_JOB = ("UPDATE jobs SET state = 'in_progress', attempts = attempts + 1, lease_until = ?, worker = ? "
             "WHERE run_id = ? AND key = ?")
_FINISH_JOB = ("UPDATE jobs SET state = ?, result = ?, change = ?, change_note = ?, lease_until = NULL "
               "WHERE run_id = ? AND key = ? AND state = 'in_progress' AND worker = ? AND attempts = ?")
_RELEASE = ("UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), lease_until = NULL, worker = NULL "
            "WHERE run_id = ? AND state = 'in_progress'")
_RETRY = ("UPDATE jobs SET state = 'pending', result = NULL, change = '', change_note = '', lease_until = NULL, "
          "worker = NULL WHERE run_id = ? AND state = 'failed' AND attempts < ?")
_PRUNE = ("SELECT id FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY id DESC LIMIT ?) AND id != ?")


class JobState(str, enum.Enum):
    """Where one job of a run stands."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"  # its prompts are in a batch of the provider's Batch API (run/batch_rounds.py)


class RunStatus(str, enum.Enum):
    """Where one run stands; running and interrupted runs can be resumed."""

    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Job:
    """One claimed page of a run; `worker` and `attempts` identify the claim that finish() must match."""

    run_id: int
    key: str
    ref: DocRef
    depth: int
    attempts: int
    worker: str = ""


class Outcome(NamedTuple):
    """What finish_many() records for one claimed job: its final state, result and change, and its page."""

    job: Job
    state: JobState
    result: dict | None
    change: str = ""
    change_note: str = ""
    page: PageRecord | None = None
    source: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """One run of the crawl: its source, the options it was started with, and how it ended."""

    id: int
    source: str
    options: dict
    status: str
    started: float
    finished: float | None


def _run_info(row: tuple) -> RunInfo:
    return RunInfo(row[0], row[1], from_json(row[2]), RunStatus(row[3]), row[4], row[5])


class JobQueue(PageMemory, BatchLedger):
    """The jobs, runs and page memory of one --state-dir, shared by every process of a run."""

    def __init__(self, path: Path, lease_s: float = 120.0, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.lease_s = lease_s
        self._clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the job database {self.path}: {exc}") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            self._db.execute("PRAGMA busy_timeout = 30000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")  # durable across crashes of the process, not of the OS
            with self._tx() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                app = db.execute("PRAGMA application_id").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if app not in (0, _APPLICATION_ID) or (app == 0 and tables):
                    raise ConfigError(f"{self.path} is not a document-it job database; "
                                      "remove it or use another --state-dir")
                if version > SCHEMA_VERSION or version < 0:
                    raise ConfigError(f"{self.path} was written by a newer document-it (job schema v{version}, "
                                      f"this one reads v{SCHEMA_VERSION}); upgrade or use another --state-dir")
                if version < SCHEMA_VERSION:
                    for statement in _SCHEMA:
                        db.execute(statement)
                    db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"cannot open the job database {self.path}: {exc}") from None
        except sqlite3.DatabaseError:
            raise ConfigError(f"{self.path} is not a document-it job database; "
                              "remove it or use another --state-dir") from None

    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> JobQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before the first read so concurrent writers queue up."""
        with self._lock, self._damage():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, *args: Any) -> list[tuple]:
        with self._lock, self._damage():
            return self._db.execute(sql, args).fetchall()

    def _write(self, sql: str, *args: Any) -> int:
        with self._lock, self._damage():
            return self._db.execute(sql, args).rowcount

    @contextlib.contextmanager
    def _damage(self) -> Iterator[None]:
        """A damaged file or a full disk is the user's to fix: one line, not a traceback."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            raise OutputError(f"cannot use the job database {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"the job database {self.path} is damaged ({exc}); remove it or use another "
                              "--state-dir") from None

    # runs

    def start_run(self, source: str, options: dict) -> RunInfo:
        """Record a new run as running and return it."""
        with self._tx() as db:
            cursor = db.execute("INSERT INTO runs (source, options, status, started) VALUES (?, ?, ?, ?)",
                                (source, to_json(options), RunStatus.RUNNING.value, self._clock()))
            run_id = cursor.lastrowid
        return self.run(run_id)

    def unfinished_run(self) -> RunInfo | None:
        """The latest run when it is still running or was interrupted, else None."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC LIMIT 1")
        if rows and rows[0][3] in (RunStatus.RUNNING.value, RunStatus.INTERRUPTED.value):
            return _run_info(rows[0])
        return None

    def run(self, run_id: int) -> RunInfo:
        """The run with this id (KeyError when there is none)."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", run_id)
        if not rows:
            raise KeyError(run_id)
        return _run_info(rows[0])

    def finish_run(self, run_id: int, status: str) -> None:
        """Set a run's status; any status but running also stamps when it finished."""
        status = RunStatus(status)
        finished = None if status is RunStatus.RUNNING else self._clock()
        self._write("UPDATE runs SET status = ?, finished = ? WHERE id = ?", status.value, finished, run_id)

    # jobs

    def add(self, run_id: int, items: Iterable[tuple[str, DocRef, int]], max_jobs: int | None = None) -> int:
        """Queue (key, ref, depth) items not yet in the run, up to max_jobs jobs in all; returns how many were new."""
        added = 0
        with self._tx() as db:
            seq, total = db.execute("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM jobs WHERE run_id = ?",
                                    (run_id,)).fetchone()
            for key, ref, depth in items:
                if max_jobs is not None and total >= max_jobs:
                    break
                seq += 1
                new = db.execute(
                    "INSERT OR IGNORE INTO jobs (run_id, key, url, title, topic, note, depth, state, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (run_id, key, ref.url, ref.title, ref.topic, ref.note, depth, seq)).rowcount
                added += new
                total += new
        return added

    def add_removed(self, run_id: int, items: Iterable[tuple[str, str, str]]) -> None:
        """Record (key, url, note) pages found gone as skipped jobs of the run whose change is 'removed'."""
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs WHERE run_id = ?", (run_id,)).fetchone()[0]
            for number, (key, url, note) in enumerate(items, seq + 1):
                db.execute("INSERT OR IGNORE INTO jobs (run_id, key, url, title, topic, note, depth, state, change, "
                           "change_note, seq) VALUES (?, ?, ?, '', '', '', 0, 'skipped', 'removed', ?, ?)",
                           (run_id, key, url, note, number))

    def claim_alias(self, run_id: int, key: str, url: str, owner: str) -> bool:
        """Reserve `key` (where the job `owner`'s redirect landed) for that job; False when the run has that
        page under another job. The owner keeps its claim when it is tried again (retry, resume)."""
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs WHERE run_id = ?", (run_id,)).fetchone()[0]
            if db.execute("INSERT OR IGNORE INTO jobs (run_id, key, url, title, topic, note, depth, state, "
                          "change_note, seq) VALUES (?, ?, ?, '', '', ?, 0, 'skipped', 'reached by redirect', ?)",
                          (run_id, key, url, owner, seq + 1)).rowcount == 1:
                return True
            row = db.execute("SELECT state, note, change_note FROM jobs WHERE run_id = ? AND key = ?",
                             (run_id, key)).fetchone()
            return row == ("skipped", owner, "reached by redirect")

    def keys(self, run_id: int) -> set[str]:
        """The dedupe keys of every job of the run."""
        return {row[0] for row in self._read("SELECT key FROM jobs WHERE run_id = ?", run_id)}

    def urls(self, run_id: int) -> list[str]:
        """The run's page URLs in the order they were queued: shallowest first, then as they were found."""
        return [row[0] for row in self._read("SELECT url FROM jobs WHERE run_id = ? ORDER BY depth, seq", run_id)]

    def claim(self, run_id: int, worker: str) -> Job | None:
        """Take the next job (pending, or leased by a worker that stopped renewing), shallowest first."""
        jobs = self.claim_many(run_id, worker, 1)
        return jobs[0] if jobs else None

    def claim_many(self, run_id: int, worker: str, count: int, waited_only: bool = False) -> list[Job]:
        """Take up to `count` next jobs in one transaction, in the order claim() would take them (`waited_only`:
        jobs that waited for a batch, not pages never started)."""
        kept = _KEPT if waited_only else ""
        with self._tx() as db:
            now = self._clock()
            rows = db.execute(_EXPIRED_JOB.format(kept=kept), (run_id, now, count)).fetchall()
            if len(rows) < count:
                rows += db.execute(_PENDING_JOB.format(kept=kept), (run_id, count - len(rows))).fetchall()
            db.executemany(_TAKE_JOB, [(now + self.lease_s, worker, run_id, row[1]) for row in rows])
        return [Job(row[0], row[1], DocRef(url=row[2], title=row[3], topic=row[4], note=row[5]), row[6], row[7] + 1,
                    worker) for row in rows]

    def renew(self, run_id: int, worker: str) -> None:
        """Extend the leases this worker holds."""
        self._write("UPDATE jobs SET lease_until = ? WHERE run_id = ? AND worker = ? AND state = 'in_progress'",
                    self._clock() + self.lease_s, run_id, worker)

    def finish(self, job: Job, state: JobState, result: dict | None, *, change: str = "", change_note: str = "",
               page: PageRecord | None = None, source: str | None = None) -> bool:
        """Record a claimed job's outcome (and its page); False when the claim was lost to another worker."""
        return self.finish_many([Outcome(job, state, result, change, change_note, page, source)])[0]

    def finish_many(self, outcomes: list[Outcome]) -> list[bool]:
        """Record several claimed jobs' outcomes in one transaction; for each, False when its claim was lost."""
        for outcome in outcomes:
            if JobState(outcome.state) in (JobState.PENDING, JobState.IN_PROGRESS):
                raise ValueError(f"finish() needs a final state, not {JobState(outcome.state).value}")
        done = []
        with self._tx() as db:
            for job, state, result, change, change_note, page, source in outcomes:
                updated = db.execute(_FINISH_JOB, (JobState(state).value, None if result is None else to_json(result),
                                                   change, change_note, job.run_id, job.key, job.worker,
                                                   job.attempts)).rowcount
                done.append(bool(updated))
                if updated and JobState(state) is not JobState.WAITING:
                    db.execute("DELETE FROM kept_pages WHERE run_id = ? AND key = ?", (job.run_id, job.key))
                if updated and page is not None:
                    if source is None:
                        source = db.execute("SELECT source FROM runs WHERE id = ?", (job.run_id,)).fetchone()[0]
                    upsert_page(db, source, page)
        return done

    def release(self, run_id: int, worker: str | None = None) -> int:
        """Put in-progress jobs (all, or one worker's) back to pending, undoing their attempt; returns how many."""
        if worker is None:
            return self._write(_RELEASE, run_id)
        return self._write(_RELEASE + " AND worker = ?", run_id, worker)

    def retry_failed(self, run_id: int, max_attempts: int) -> int:
        """Queue again the failed jobs tried fewer than max_attempts times; returns how many."""
        return self._write(_RETRY, run_id, max_attempts)

    def counts(self, run_id: int) -> dict[JobState, int]:
        """How many jobs of the run are in each state (every state present)."""
        found = dict(self._read("SELECT state, COUNT(*) FROM jobs WHERE run_id = ? GROUP BY state", run_id))
        return {state: found.get(state.value, 0) for state in JobState}

    def active(self, run_id: int, waited_only: bool = False) -> bool:
        """Whether any job of the run (that waited for a batch, with `waited_only`) is pending or in progress."""
        return bool(self._read("SELECT 1 FROM jobs WHERE run_id = ? AND state IN ('pending', 'in_progress') "
                               f"{_KEPT if waited_only else ''} LIMIT 1", run_id))

    def open_by_topic(self, run_id: int) -> dict[str, int]:
        """How many pending or in-progress jobs each topic of the run has."""
        return dict(self._read("SELECT topic, COUNT(*) FROM jobs WHERE run_id = ? AND state IN "
                               "('pending', 'in_progress') GROUP BY topic", run_id))

    def results(self, run_id: int, topics: Iterable[str] | None = None) -> list[dict]:
        """The result dicts of the run's done and failed jobs (of `topics` only, if given), sorted by url."""
        wanted = None if topics is None else set(topics)
        with self._lock, self._damage():
            cursor = self._db.execute("SELECT topic, result FROM jobs WHERE run_id = ? AND state IN ('done', 'failed') "
                                      "AND result IS NOT NULL ORDER BY url, key", (run_id,))
            return [from_json(result) for topic, result in cursor if wanted is None or topic in wanted]

    def result_topics(self, run_id: int) -> set[str]:
        """The topics of the run's done and failed jobs that have a result."""
        return {row[0] for row in self._read("SELECT DISTINCT topic FROM jobs WHERE run_id = ? AND state IN "
                                             "('done', 'failed') AND result IS NOT NULL", run_id)}

    def changes(self, run_id: int) -> list[tuple[str, str, str]]:
        """(url, change, change_note) of the run's jobs that recorded a change, sorted by url."""
        rows = self._read("SELECT url, change, change_note FROM jobs WHERE run_id = ? AND change != '' "
                          "ORDER BY url, key", run_id)
        return [(url, change, note) for url, change, note in rows]

    def total(self, run_id: int) -> int:
        """How many jobs the run has."""
        return self._read("SELECT COUNT(*) FROM jobs WHERE run_id = ?", run_id)[0][0]

    def prune(self, keep_runs: int = 3) -> int:
        """Delete runs older than the newest keep_runs (never the unfinished one); returns how many jobs went."""
        unfinished = self.unfinished_run()
        removed = 0
        with self._tx() as db:
            old = [row[0] for row in db.execute(_PRUNE, (max(keep_runs, 0), unfinished.id if unfinished else -1))]
            for run_id in old:
                removed += db.execute("DELETE FROM jobs WHERE run_id = ?", (run_id,)).rowcount
                db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            forget_runs(db, old)
        return removed
