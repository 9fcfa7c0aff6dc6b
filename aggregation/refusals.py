"""Which records of a refused block ClickHouse cannot store, and its own words for why.

When an insert fails, the sink asks ClickHouse itself, not a Python imitation of its parser: the
records are inserted into a throwaway `Null`-engine twin of the table (same columns, defaults,
EPHEMERAL inputs and CHECK constraints; it parses and checks, then discards), first all together,
then narrowed down using the row number in ClickHouse's message, else by halves (JSON lines, or slices
of an Arrow table, inserted as Arrow: the same conversions as the real insert). A record is refused
only when it fails on its own with a data error; if the block fails but no record does (the server
is short of memory, overloaded, ...) nothing is refused and the sink retries the insert later. Costs a
few inserts per refused record; it only runs after a failed insert.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from meterstream.aggregation.client import insert_arrow

log = logging.getLogger("meterstream.sink")

# Server errors that say nothing about the data (the store is away, overloaded, or refuses the query
# itself, e.g. a setting an older server does not know): the insert may pass later, nothing is refused.
TRANSIENT_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE (connection cut)
        16,  # NO_SUCH_COLUMN_IN_TABLE (a table older than the sink: `meterstream init` upgrades it)
        47,  # UNKNOWN_IDENTIFIER
        62,  # SYNTAX_ERROR
        115,  # UNKNOWN_SETTING
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        394,  # QUERY_WAS_CANCELLED
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
    }
)
_ROW = re.compile(r"at row (\d+)")

# Rows to try: JSON lines (list[bytes]) or an Arrow table (sliced like a list: table[lo:hi])
Rows = Any
Probe = Callable[[Rows], str | None]


def is_data_error(exc: BaseException) -> bool:
    """True when ClickHouse answered and refused what it was given (not: unreachable, overloaded)."""
    if not isinstance(exc, DatabaseError) or isinstance(exc, OperationalError):
        return False
    code = getattr(exc, "code", None)
    if code is None:
        found = re.search(r"Code: (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    return code is not None and code not in TRANSIENT_CODES


def refused_lines(probe: Probe, lines: Rows) -> dict[int, str]:
    """Index -> error message of each line (or Arrow row) `probe` refuses on its own (`probe` returns
    None or the error)."""
    out: dict[int, str] = {}

    def search(lo: int, hi: int, error: str | None) -> None:
        if lo >= hi or error is None:
            return
        if hi - lo == 1:
            out[lo] = error
            return
        row = _ROW.search(error)
        n = int(row.group(1)) if row else 0
        if 1 <= n <= hi - lo:  # ClickHouse named the row: check it alone, then the rest on both sides
            bad = lo + n - 1
            alone = probe(lines[bad : bad + 1])
            if alone is not None:
                out[bad] = alone
                search(lo, bad, probe(lines[lo:bad]) if bad > lo else None)
                search(bad + 1, hi, probe(lines[bad + 1 : hi]) if bad + 1 < hi else None)
                return
        mid = (lo + hi) // 2
        search(lo, mid, probe(lines[lo:mid]))
        search(mid, hi, probe(lines[mid:hi]))

    search(0, len(lines), probe(lines))
    return out


class NullProbe:
    """Insert JSON lines or an Arrow table into a `Null`-engine twin of `db.table`: None if ClickHouse takes
    them, else its error.

    Raises what is not a data error (the store is away): the caller retries later.
    """

    def __init__(self, client: Client, db: str, table: str, fields: tuple[str, ...], settings: dict) -> None:
        self.client, self.db, self.table, self.fields, self.settings = client, db, table, fields, settings
        self.twin = f"{table}_refusal_probe_{uuid.uuid4().hex[:8]}"
        self.inserts = 0

    def __enter__(self) -> NullProbe:
        # made from the table as it is now (a newer sink may have upgraded it), dropped afterwards
        self.client.command(f"CREATE TABLE {self.db}.{self.twin} AS {self.db}.{self.table} ENGINE = Null")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.client.command(f"DROP TABLE IF EXISTS {self.db}.{self.twin}")
        except Exception as err:  # an empty Null table left behind is harmless
            log.warning("could not drop %s.%s: %s", self.db, self.twin, err)

    def __call__(self, lines: Rows) -> str | None:
        self.inserts += 1
        try:
            if isinstance(lines, pa.Table):
                insert_arrow(self.client, f"{self.db}.{self.twin}", lines, self.settings)  # the sink's own path
            else:
                self.client.raw_insert(
                    f"{self.db}.{self.twin}", self.fields, b"\n".join(lines), settings=self.settings, fmt="JSONEachRow"
                )
        except Exception as exc:
            if is_data_error(exc):
                return str(exc)
            raise
        return None
