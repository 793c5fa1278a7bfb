"""``tether audit tail``: the newest records of the audit log, then, with ``--follow``, each new
one as it is committed, until interrupted.

A table on a terminal, tab-separated lines in a pipe, or ``--json``: one JSON object a line (JSON
lines), the record whole (seq, at, kind, agent, body, hash), whether following or not. The store
is read as ``tether audit`` reads it (the data directory's SQLite, or ``--store-url``).

The log is partitioned, a chain per replica (:mod:`tether.core.audit`); records show in the log's
stable order (:func:`tether.core.partitions.log_order`: each partition in seq order, merged by
time, then partition, then seq), and a record of a partition other than the legacy ``0`` shows
its seq as ``partition/seq``. Following polls every ``--interval`` seconds for the records of
each partition after the last one printed of that partition, so a record shows once it is
committed, in its partition's seq order, never twice; records of different replicas committed
between two polls show in time order among themselves. Ctrl-C, SIGTERM or a reader that goes
away (``| head``) end it with status 0.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from tether.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    StoreUrl,
    open_existing_store,
    tether_errors,
)
from tether.cli.output import Column, instant, print_json_line, print_rows, print_table
from tether.core.audit import LEGACY_PARTITION, AuditRecord
from tether.core.partitions import log_order
from tether.store import SqlStore


def _summary(record: AuditRecord) -> str:
    body = record.body
    call = body.get("call")
    verdict = body.get("verdict")
    if isinstance(call, dict) and isinstance(verdict, dict):
        reasons = verdict.get("reasons")
        code = ""
        if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict):
            code = f" ({reasons[0].get('code')})"
        return f"{call.get('action')} {call.get('tool')} → {verdict.get('decision')}{code}"
    if isinstance(call, dict):
        return f"{call.get('action')} {call.get('tool')}: {body.get('status')}"
    intent = body.get("intent")
    if isinstance(intent, dict):
        return f"workflow {intent.get('workflow')}"
    # Everything else: the ids and facts that say what happened, in a stable order.
    keys = ("approval_id", "breakglass_id", "tool", "upstream", "state", "approver", "reason")
    shown = [f"{k}={body[k]}" for k in keys if isinstance(body.get(k), str | int | bool)]
    return " ".join(shown)  # whole: a reason is never cut (a terminal's table folds it)


def tail(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    lines: Annotated[
        int,
        typer.Option("--lines", "-n", min=1, max=10000, help="How many of the newest to show."),
    ] = 20,
    store_url: StoreUrl = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing new records as they are committed, until "
            "interrupted (Ctrl-C or SIGTERM: exit 0).",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, max=60, help="Seconds between reads with --follow.")
    ] = 1.0,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Each record whole, as one JSON object a line (JSON lines)."),
    ] = False,
) -> None:
    """Show the most recent records; with --follow, then every new one as it is committed."""
    with tether_errors():
        store, _ = open_existing_store(data_dir, store_url)
        try:
            with _stopped_by_sigterm() as stop:
                # Each partition's last ``lines`` records are enough to find the newest overall.
                heads = store.chain_heads()
                after = {p: max(0, (h.seq if h else 0) - lines) for p, h in heads.items()}
                if follow and not as_json:  # the header once, as `audit tail` prints it
                    print_rows([[column.header for column in _TAIL_COLUMNS]])
                after = _print_records(store, after, as_json, table=not follow, last=lines)
                while follow and not stop.requested:
                    stop.sleep(interval)
                    after = _print_records(store, after, as_json, table=False)
        except (KeyboardInterrupt, _Stop):
            pass  # --follow ends on Ctrl-C or SIGTERM, with what it printed complete
        except BrokenPipeError:
            # The reader went away (``| head``): nothing more to say, and nothing to say it on.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            store.close()


class _Stop(Exception):
    """SIGTERM arrived while following."""


class _Sigterm:
    """SIGTERM, as Ctrl-C ends a sleep: at once while sleeping between polls, and otherwise
    once the poll under way is done. It never interrupts a read, where an exception raised
    inside the database driver would leave the connection broken and end ``tail`` with an
    error instead of exit 0."""

    def __init__(self) -> None:
        self.requested = False
        self._sleeping = False

    def handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self._sleeping:
            raise _Stop

    def sleep(self, seconds: float) -> None:
        self._sleeping = True
        try:
            if not self.requested:
                time.sleep(seconds)
        finally:
            self._sleeping = False
        if self.requested:
            raise _Stop


@contextmanager
def _stopped_by_sigterm() -> Iterator[_Sigterm]:
    """SIGTERM (a supervisor's stop, ``timeout``, ``kill``) ends ``tail`` as Ctrl-C does."""
    stop = _Sigterm()
    try:
        previous = signal.signal(signal.SIGTERM, stop.handle)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield stop
        return
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


_TAIL_COLUMNS = [
    Column("seq"),
    Column("at"),
    Column("kind"),
    Column("agent", key=True),
    Column("what"),
]


def _print_records(
    store: SqlStore,
    after: dict[str, int],
    as_json: bool,
    *,
    table: bool,
    last: int | None = None,
) -> dict[str, int]:
    """Print each partition's records after its seq in ``after`` (a partition not in it: from
    its first), in the log's order (only the ``last`` newest, when given); returns each
    partition's last seq read.

    As one table, or (``table`` false, for --follow) as lines written as they arrive."""
    # The heads say which partitions have records past what was printed: only those are read,
    # so a quiet poll is one query.
    heads = store.chain_heads()
    names = [p for p, h in sorted(heads.items()) if h is not None and h.seq > after.get(p, 0)]
    read = log_order(store.audit_records(after.get(p, 0), partition=p) for p in names)
    records = list(read)
    reached = dict(after)
    for record in records:
        reached[record.partition] = max(reached.get(record.partition, 0), record.seq)
    if last is not None:
        records = records[-last:]
    if as_json:
        for record in records:
            print_json_line(record.to_json())
    else:
        rows = [[_seq(r), instant(r.at), r.kind.value, r.agent or "", _summary(r)] for r in records]
        loud = [r.kind.value.startswith("breakglass") for r in records]
        if table:
            print_table("audit log", _TAIL_COLUMNS, rows, loud=loud)
        else:
            print_rows(rows, loud=loud)
    sys.stdout.flush()
    return reached


def _seq(record: AuditRecord) -> str:
    if record.partition == LEGACY_PARTITION:
        return str(record.seq)
    return f"{record.partition}/{record.seq}"
