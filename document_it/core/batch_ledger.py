"""What the job queue remembers of the provider's Batch API (the tables `batches`, `batch_lines`,
`batch_prompts` and `kept_pages` of jobs.sqlite): every line written, the batch that carries it, the state of
every prompt by its memo key, and the downloaded page a waiting job is analysed from when its answers are in
(the job woken then).

It is written before the run waits, so a run killed while a batch is out (even `kill -9`) is continued by
--resume or the next nightly run, which poll the batches already submitted and never submit a prompt twice."""

from __future__ import annotations

import contextlib
import enum
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .page_memory import from_json, to_json

__all__ = ["BatchLedger", "LineRecord", "BatchRecord", "BatchKind", "Prompt", "PromptState", "LEDGER_SCHEMA",
           "TERMINAL", "forget_runs"]

LEDGER_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, kind TEXT NOT NULL,
       status TEXT NOT NULL, input_file_id TEXT, batch_id TEXT, path TEXT, lines INTEGER NOT NULL,
       bytes INTEGER NOT NULL, counts TEXT NOT NULL, output_file_id TEXT, error_file_id TEXT, created REAL NOT NULL,
       updated REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS batch_lines (custom_id TEXT PRIMARY KEY, batch INTEGER, question TEXT NOT NULL,
       items TEXT NOT NULL, body TEXT NOT NULL, state TEXT NOT NULL, seq INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS batch_lines_by_batch ON batch_lines (batch, state)",
    """CREATE TABLE IF NOT EXISTS batch_prompts (key TEXT PRIMARY KEY, custom_id TEXT NOT NULL, page TEXT NOT NULL,
       state TEXT NOT NULL, tries INTEGER NOT NULL, error TEXT NOT NULL, answer TEXT)""",
    """CREATE TABLE IF NOT EXISTS kept_pages (run_id INTEGER NOT NULL, key TEXT NOT NULL, fetched BLOB NOT NULL,
       PRIMARY KEY (run_id, key))""",
)

# the provider's finished states; and ours for a batch whose lines are all settled
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_CLOSED = ("collected", "split", "imported", "abandoned")
_CLOSED_SQL = ", ".join(f"'{state}'" for state in _CLOSED)


class BatchKind(str, enum.Enum):
    """Where a batch went: to the provider's Batch API, or to a file for a self-hosted runner."""

    API = "api"
    FILE = "file"


class Prompt(str, enum.Enum):
    """Where one prompt (by its memo key) stands in the ledger."""

    WAITING = "waiting"  # in a line not yet sent
    SUBMITTED = "submitted"  # in a batch (or file) not yet collected: it is never sent again meanwhile
    ANSWERED = "answered"  # its answer is kept (the memo has it too)
    FAILED = "failed"  # a batch did not answer it: asked live, or in a new batch with strict
_BATCH_COLUMNS = ("id, run_id, kind, status, input_file_id, batch_id, path, lines, bytes, counts, output_file_id, "
                  "error_file_id, created")


@dataclass(frozen=True)
class LineRecord:
    """One line of a batch input file: its custom_id, the question it asks (as data), the prompts it carries
    as (item id, memo key, page) (one item with id "" for a prompt sent alone) and the request body."""

    custom_id: str
    question: dict[str, Any]
    items: tuple[tuple[str, str, str], ...]
    body: dict[str, Any]

    def jsonl(self, endpoint: str) -> str:
        """The line as the Batch API reads it."""
        return to_json({"custom_id": self.custom_id, "method": "POST", "url": endpoint, "body": self.body})


@dataclass(frozen=True)
class BatchRecord:
    """One batch a run sent to the provider or wrote to a file, and where it stands."""

    id: int
    run_id: int
    kind: BatchKind
    status: str
    input_file_id: str | None
    batch_id: str | None
    path: str | None
    lines: int
    bytes: int
    counts: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    created: float


@dataclass(frozen=True)
class PromptState:
    """Where one prompt stands, and how many batches of this run failed to answer it (and the last reason)."""

    state: Prompt
    tries: int
    error: str

    @property
    def on_its_way(self) -> bool:
        """In a line or batch not yet collected: the page waits for it, it is not sent again."""
        return self.state in (Prompt.WAITING, Prompt.SUBMITTED)


def _batch(row: tuple) -> BatchRecord:
    return BatchRecord(row[0], row[1], BatchKind(row[2]), row[3], row[4], row[5], row[6], row[7], row[8],
                       from_json(row[9]),
                       row[10], row[11], row[12])


def _line(row: tuple) -> LineRecord:
    return LineRecord(row[0], from_json(row[1]), tuple(tuple(item) for item in from_json(row[2])),  # type: ignore[misc]
                      from_json(row[3]))


class BatchLedger:
    """The Batch API's memory; mixed into JobQueue, which provides the connection and its locking."""

    _read: Callable[..., list[tuple]]
    _write: Callable[..., int]
    _tx: Callable[[], contextlib.AbstractContextManager[sqlite3.Connection]]

    # prompts
    def prompt_states(self, keys: Iterable[str] | None = None) -> dict[str, PromptState]:
        """memo key -> PromptState, of `keys` (all when None)."""
        rows = self._read("SELECT key, state, tries, error FROM batch_prompts")
        wanted = None if keys is None else set(keys)
        return {key: PromptState(Prompt(state), tries, error) for key, state, tries, error in rows
                if wanted is None or key in wanted}

    def answer(self, key: str, since_run: int = 0) -> Any | None:
        """The answer a batch gave for `key` (as the memo keeps it), if the ledger holds one from a batch of run
        `since_run` or later."""
        rows = self._read("SELECT p.answer FROM batch_prompts p JOIN batch_lines l ON l.custom_id = p.custom_id "
                          "JOIN batches b ON b.id = l.batch WHERE p.key = ? AND p.state = 'answered' "
                          "AND b.run_id >= ?", key, since_run)
        return from_json(rows[0][0]) if rows and rows[0][0] is not None else None

    def reset_tries(self) -> None:
        """A new run counts its own tries (--batch-api strict gives up on a prompt after --retries of them)."""
        self._write("UPDATE batch_prompts SET tries = 0 WHERE tries > 0")

    # lines
    def store_lines(self, lines: list[LineRecord]) -> None:
        """Record lines waiting to be sent, and their prompts as waiting (keeping how often they failed)."""
        with self._tx() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM batch_lines").fetchone()[0]
            for number, line in enumerate(lines, seq + 1):
                db.execute("INSERT INTO batch_lines (custom_id, batch, question, items, body, state, seq) "
                           "VALUES (?, NULL, ?, ?, ?, 'waiting', ?)",
                           (line.custom_id, to_json(line.question), to_json(line.items), to_json(line.body), number))
                for _, key, page in line.items:
                    db.execute("INSERT INTO batch_prompts (key, custom_id, page, state, tries, error) "
                               "VALUES (?, ?, ?, 'waiting', 0, '') ON CONFLICT (key) DO UPDATE SET "
                               "custom_id = excluded.custom_id, page = excluded.page, state = 'waiting'",
                               (key, line.custom_id, page))

    def waiting_lines(self) -> list[LineRecord]:
        """The lines not yet in a batch, in the order they were stored."""
        return [_line(row) for row in self._read("SELECT custom_id, question, items, body FROM batch_lines "
                                                 "WHERE state = 'waiting' ORDER BY seq")]

    def lines_of(self, batch: int) -> list[LineRecord]:
        """The lines one batch carries."""
        return [_line(row) for row in self._read("SELECT custom_id, question, items, body FROM batch_lines "
                                                 "WHERE batch = ? ORDER BY seq", batch)]

    # batches
    def add_batch(self, run_id: int, kind: BatchKind, custom_ids: list[str], size: int, *,
                  input_file_id: str | None = None, path: str | None = None) -> int:
        """Record a batch file uploaded (API, status uploaded) or written (FILE, status exported) with the lines
        it carries, before any batch is created from it; returns its row id."""
        now = time.time()
        kind = BatchKind(kind)
        status = "uploaded" if kind is BatchKind.API else "exported"
        with self._tx() as db:
            row = db.execute("INSERT INTO batches (run_id, kind, status, input_file_id, path, lines, bytes, counts, "
                             "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?, ?)",
                             (run_id, kind.value, status, input_file_id, path, len(custom_ids), size, now,
                              now)).lastrowid
            for custom_id in custom_ids:
                db.execute("UPDATE batch_lines SET batch = ?, state = 'submitted' WHERE custom_id = ?",
                           (row, custom_id))
                db.execute("UPDATE batch_prompts SET state = 'submitted' WHERE custom_id = ?", (custom_id,))
        assert row is not None
        return row

    def batch_created(self, row: int, batch_id: str, status: str) -> None:
        """The provider took the file as a batch: its id, recorded before the run waits for it."""
        self._write("UPDATE batches SET batch_id = ?, status = ?, updated = ? WHERE id = ?", batch_id, status,
                    time.time(), row)

    def batch_status(self, row: int, status: str, counts: dict[str, int] | None = None,
                     output_file_id: str | None = None, error_file_id: str | None = None) -> None:
        """What the provider last said of a batch."""
        self._write("UPDATE batches SET status = ?, counts = COALESCE(?, counts), output_file_id = "
                    "COALESCE(?, output_file_id), error_file_id = COALESCE(?, error_file_id), updated = ? "
                    "WHERE id = ?", status, None if counts is None else to_json(counts), output_file_id,
                    error_file_id, time.time(), row)

    def open_batches(self, kind: BatchKind = BatchKind.API) -> list[BatchRecord]:
        """Batches of `kind` not yet collected, oldest first: those of any run in this state dir (a nightly run
        collects the night before's)."""
        return [_batch(row) for row in self._read(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE kind = ? AND "
                                                  f"status NOT IN ({_CLOSED_SQL}) ORDER BY id", BatchKind(kind).value)]

    def batches(self, run_id: int | None = None) -> list[BatchRecord]:
        """Every batch recorded (of one run, when given), oldest first."""
        if run_id is None:
            return [_batch(row) for row in self._read(f"SELECT {_BATCH_COLUMNS} FROM batches ORDER BY id")]
        return [_batch(row) for row in self._read(f"SELECT {_BATCH_COLUMNS} FROM batches WHERE run_id = ? "
                                                  "ORDER BY id", run_id)]

    def settle(self, row: int, answered: dict[str, Any], failed: dict[str, str], status: str = "collected") -> None:
        """A batch's outcome: the answers by memo key (kept), and the keys failed with why (a try counted); its
        lines are closed and the batch marked `status`."""
        with self._tx() as db:
            for key, value in answered.items():
                db.execute("UPDATE batch_prompts SET state = 'answered', error = '', answer = ? WHERE key = ?",
                           (to_json(value), key))
            for key, error in failed.items():
                db.execute("UPDATE batch_prompts SET state = 'failed', tries = tries + 1, error = ? WHERE key = ?",
                           (error[:500], key))
            # a closed line's body (the page's text) is not needed again: kept out of the file from now on
            db.execute("UPDATE batch_lines SET state = 'closed', body = '{}' WHERE batch = ?", (row,))
            db.execute("UPDATE batches SET status = ?, updated = ? WHERE id = ?", (status, time.time(), row))

    def refuse_line(self, run_id: int, line: LineRecord, why: str) -> None:
        """A line no batch can carry (too large alone): its prompts fail at once, in one transaction."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("INSERT INTO batches (run_id, kind, status, lines, bytes, counts, created, updated) "
                             "VALUES (?, 'api', 'split', 1, 0, '{}', ?, ?)", (run_id, now, now)).lastrowid
            db.execute("UPDATE batch_lines SET batch = ?, state = 'closed', body = '{}' WHERE custom_id = ?",
                       (row, line.custom_id))
            db.executemany("UPDATE batch_prompts SET state = 'failed', tries = tries + 1, error = ? WHERE key = ?",
                           [(why[:500], key) for _, key, _ in line.items])

    def abandon(self, kind: BatchKind) -> list[BatchRecord]:
        """Give up the open batches of `kind` (a run of the other kind will not collect them): their prompts that
        were not answered are as new again; returns them."""
        dropped = self.open_batches(kind)
        with self._tx() as db:
            for record in dropped:
                db.execute("DELETE FROM batch_prompts WHERE state != 'answered' AND custom_id IN "
                           "(SELECT custom_id FROM batch_lines WHERE batch = ?)", (record.id,))
                db.execute("UPDATE batch_lines SET state = 'closed', body = '{}' WHERE batch = ?", (record.id,))
                db.execute("UPDATE batches SET status = 'abandoned', updated = ? WHERE id = ?",
                           (time.time(), record.id))
        return dropped

    def unbatch(self, row: int) -> None:
        """The provider refused the batch as too large: its lines wait again (to go in smaller files) and the
        batch is closed as split."""
        with self._tx() as db:
            db.execute("UPDATE batch_prompts SET state = 'waiting' WHERE custom_id IN "
                       "(SELECT custom_id FROM batch_lines WHERE batch = ?)", (row,))
            db.execute("UPDATE batch_lines SET batch = NULL, state = 'waiting' WHERE batch = ?", (row,))
            db.execute("UPDATE batches SET status = 'split', updated = ? WHERE id = ?", (time.time(), row))

    # the jobs that wait for a batch
    def wake(self, run_id: int, urls: Iterable[str] | None = None) -> int:
        """Put the jobs waiting for a batch back to pending (their answers are in), undoing their attempt: all,
        or those of `urls`; returns how many."""
        sql = ("UPDATE jobs SET state = 'pending', attempts = MAX(attempts - 1, 0), lease_until = NULL, "
               "worker = NULL WHERE run_id = ? AND state = 'waiting'")
        if urls is None:
            return self._write(sql, run_id)
        with self._tx() as db:
            return sum(db.execute(sql + " AND url = ?", (run_id, url)).rowcount for url in set(urls))

    # the downloaded page of a job that waits for a batch
    def keep_page(self, run_id: int, key: str, fetched: bytes) -> None:
        """Keep a waiting job's download: it is analysed from it once its answers are in, as it was then."""
        self._write("INSERT OR REPLACE INTO kept_pages (run_id, key, fetched) VALUES (?, ?, ?)", run_id, key,
                    sqlite3.Binary(fetched))

    def kept_page(self, run_id: int, key: str) -> bytes | None:
        """The download kept for a waiting job, if any."""
        rows = self._read("SELECT fetched FROM kept_pages WHERE run_id = ? AND key = ?", run_id, key)
        return bytes(rows[0][0]) if rows else None


def forget_runs(db: sqlite3.Connection, run_ids: list[int]) -> None:
    """Drop what the ledger holds for pruned runs (inside the caller's transaction): their kept downloads,
    their closed batches and lines, and the answered prompts those carried (a failed prompt keeps its tries)."""
    for run_id in run_ids:
        db.execute("DELETE FROM kept_pages WHERE run_id = ?", (run_id,))
        rows = [row for (row,) in db.execute(f"SELECT id FROM batches WHERE run_id = ? AND status IN ({_CLOSED_SQL})",
                                             (run_id,))]
        for row in rows:
            db.execute("DELETE FROM batch_prompts WHERE state = 'answered' AND custom_id IN "
                       "(SELECT custom_id FROM batch_lines WHERE batch = ?)", (row,))
            db.execute("DELETE FROM batch_lines WHERE batch = ?", (row,))
            db.execute("DELETE FROM batches WHERE id = ?", (row,))
