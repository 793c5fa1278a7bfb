"""``tether audit tail``: the newest records of the audit log, then, with ``--follow``, each new
one as it is committed, until interrupted.

A table on a terminal, tab-separated lines in a pipe, or ``--json``: one JSON object a line (JSON
lines), the record whole (seq, at, kind, agent, body, hash), whether following or not. The store
is read as ``tether audit`` reads it (the data directory's SQLite, or ``--store-url``); following
polls it every ``--interval`` seconds for records after the last one printed, so a record shows
once it is committed, in seq order, never twice. Ctrl-C, SIGTERM or a reader that goes away
(``| head``) end it with status 0.
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
from tether.core.audit import AuditRecord
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
            with _stopped_by_sigterm():
                head = store.chain_head()
                after = max(0, (head.seq if head else 0) - lines)
                if follow and not as_json:  # the header once, as `audit tail` prints it
                    print_rows([[column.header for column in _TAIL_COLUMNS]])
                after = _print_records(store, after, as_json, table=not follow)
                while follow:
                    time.sleep(interval)
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


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM (a supervisor's stop, ``timeout``, ``kill``) ends ``tail`` as Ctrl-C does."""

    def stop(signum: int, frame: object) -> None:
        raise _Stop

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


_TAIL_COLUMNS = [
    Column("seq"),
    Column("at"),
    Column("kind"),
    Column("agent", key=True),
    Column("what"),
]


def _print_records(store: SqlStore, after: int, as_json: bool, *, table: bool) -> int:
    """Print the records after seq ``after``; returns the last seq printed (or ``after``).

    As one table, or (``table`` false, for --follow) as lines written as they arrive."""
    records = list(store.audit_records(after_seq=after))
    if as_json:
        for record in records:
            print_json_line(record.to_json())
    else:
        rows = [
            [str(r.seq), instant(r.at), r.kind.value, r.agent or "", _summary(r)] for r in records
        ]
        loud = [r.kind.value.startswith("breakglass") for r in records]
        if table:
            print_table("audit log", _TAIL_COLUMNS, rows, loud=loud)
        else:
            print_rows(rows, loud=loud)
    sys.stdout.flush()
    return records[-1].seq if records else after
