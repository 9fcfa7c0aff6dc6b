"""What has been invoiced: closed periods, stored documents and billed lines (ClickHouse I/O only)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

import msgspec
import orjson
from clickhouse_connect.driver.client import Client

from meterstream.invoice_emitter.adjustments import Billed, BilledDetail
from meterstream.rating.money import EXACT

INVOICE_COLUMNS = [
    "tenant", "customer", "period", "invoice_id", "plan", "currency", "subtotal", "total", "line_count", "document",
    "closed_at",
]  # fmt: skip
LINE_COLUMNS = [
    "tenant", "customer", "period", "line_no", "meter", "description", "quantity", "amount", "currency",
    "closed_at", "line_key", "applies_to", "kind", "streamed_amount",
]  # fmt: skip


def closed_periods(client: Client, db: str) -> list[str]:
    return [r[0] for r in client.query(f"SELECT DISTINCT period FROM {db}.period_closes ORDER BY period").result_rows]


def newest_closed_sql(db: str) -> str:
    """The query of the newest month closed for every customer (one row: its label, "" when none), shared by
    `newest_closed` and the API's reader (api/closed_periods.py)."""
    return f"SELECT max(period) FROM {db}.period_closes"


def newest_closed(client: Client, db: str) -> str | None:
    """The newest month closed for every customer ("2026-11"), or None: none closed, or no `period_closes` table
    yet (a store no close has written to)."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = {d:String} AND name = 'period_closes'", parameters={"d": db}
    ).result_rows[0][0]
    if not exists:
        return None
    label = client.query(newest_closed_sql(db)).result_rows[0][0]
    return label or None  # max() of no rows is ""


def mark_closed(client: Client, db: str, period: str) -> None:
    client.insert(f"{db}.period_closes", [[period, datetime.now(UTC)]], column_names=["period", "closed_at"])


def stored_invoices(client: Client, db: str, period: str) -> list[dict[str, Any]]:
    """The documents a close wrote, unchanged (final)."""
    rows = client.query(
        f"SELECT document FROM {db}.invoices FINAL WHERE period = {{p:String}} ORDER BY tenant, customer",
        parameters={"p": period},
    ).result_rows
    return [orjson.loads(r[0]) for r in rows]


def _lines_of(subscriptions: bool | None) -> str:
    """SQL condition on `line_key`: subscription lines (keys starting with `@`, subscription_invoice.py), the
    file path's lines, or (None) all."""
    if subscriptions is None:
        return ""
    return f"AND {'' if subscriptions else 'NOT '}startsWith(line_key, '@')"


def billed_lines(
    client: Client, db: str, applies_to: str, before: str, subscriptions: bool | None = None
) -> dict[tuple[str, str], dict[str, Billed]]:
    """Per customer and line key: the meter, quantity, amount and streamed amount (None when a line of the key has
    none) billed for `applies_to` by every stored invoice but those of label `before` (the invoice being built;
    `subscriptions`: only subscription lines, True, or only the others, False). Every label, not only earlier ones:
    a customer closed alone for a later label first (`close --customer`) may already have been billed late usage
    there."""
    rows = client.query(
        f"""
        SELECT tenant, customer, line_key, any(meter), sum(quantity), sum(amount),
               if(countIf(isNull(streamed_amount)) > 0, NULL, sum(streamed_amount))
        FROM {db}.invoice_lines FINAL
        WHERE applies_to = {{q:String}} AND period != {{p:String}} {_lines_of(subscriptions)}
        GROUP BY tenant, customer, line_key
        """,
        parameters={"q": applies_to, "p": before},
    ).result_rows
    out: dict[tuple[str, str], dict[str, Billed]] = {}
    for tenant, customer, key, meter, quantity, amount, streamed in rows:
        out.setdefault((tenant, customer), {})[key] = Billed(meter, quantity, amount, streamed)
    return out


def billed_details(
    client: Client, db: str, applies_to: str, before: str, customers: set[tuple[str, str]],
    subscriptions: bool | None = None,
) -> dict[tuple[str, str], dict[str, BilledDetail]]:  # fmt: skip
    """Per customer of `customers` and line key: what the stored invoices (but those of label `before`, as
    `billed_lines`) billed for `applies_to` per subject (the quantities of the lines' per-user shares, the share
    `(no subject)` as "") and in billed units (telecom lines: their `billed_units` pricing step; None when a
    line of the key has none), read from the documents themselves (version 2 and version 1)."""
    from meterstream.invoice_emitter.issue import NO_SUBJECT

    if not customers:
        return {}
    rows = client.query(
        f"""
        SELECT tenant, customer, period, document FROM {db}.invoices FINAL
        WHERE period != {{p:String}} AND customer IN {{customers:Array(String)}}
        """,
        parameters={"p": before, "customers": sorted({c for _, c in customers})},
    ).result_rows
    subjects: dict[tuple[str, str], dict[str, dict[str, Decimal]]] = {}
    units: dict[tuple[str, str], dict[str, Decimal | None]] = {}
    for tenant, customer, period, document in rows:
        if (tenant, customer) not in customers:
            continue
        for line in orjson.loads(document).get("lines", ()):
            if (line.get("applies_to") or period) != applies_to:
                continue
            key = line.get("line_key") or _meter(line)
            if subscriptions is not None and key.startswith("@") != subscriptions:
                continue
            by_subject = subjects.setdefault((tenant, customer), {}).setdefault(key, {})
            for share in line.get("subjects") or ():  # version 2's shares (a version 1 line has none)
                name = "" if share["subject"] == NO_SUBJECT else share["subject"]
                by_subject[name] = EXACT.add(by_subject.get(name, Decimal(0)), Decimal(share["quantity"]))
            step = _billed_units(line)
            kept = units.setdefault((tenant, customer), {})
            if key not in kept:
                kept[key] = step
            elif kept[key] is not None:
                kept[key] = None if step is None else EXACT.add(kept[key], step)  # type: ignore[arg-type]
    return {
        who: {key: BilledDetail(by_key[key], units[who][key]) for key in by_key} for who, by_key in subjects.items()
    }


def _billed_units(line: dict[str, Any]) -> Decimal | None:
    """A stored telecom line's billed units: version 1's `billed_units`, version 2's `billed_units` tier row."""
    if line.get("billed_units") is not None:
        return Decimal(line["billed_units"])
    for row in line.get("tiers") or line.get("breakdown") or ():
        if row.get("kind") == "billed_units" and row.get("quantity") is not None:
            return Decimal(row["quantity"])
    return None


def billed_quantities(
    client: Client, db: str, applies_to: str, before: str, subscriptions: bool | None = None
) -> dict[tuple[str, str, str], Decimal]:
    """Per (tenant, customer, meter): the quantity billed for `applies_to` by every stored invoice but those of
    label `before` (as `billed_lines`)."""
    rows = client.query(
        f"""
        SELECT tenant, customer, meter, sum(quantity) FROM {db}.invoice_lines FINAL
        WHERE applies_to = {{q:String}} AND period != {{p:String}} {_lines_of(subscriptions)}
        GROUP BY tenant, customer, meter
        """,
        parameters={"q": applies_to, "p": before},
    ).result_rows
    return {(t, c, m): q for t, c, m, q in rows}


def _invoice_id(doc: dict[str, Any]) -> str:
    return doc["id"] if "id" in doc else doc["invoice_id"]  # version 2, version 1


_FEES = frozenset(("fixed", "fixed_credit", "one_time", "installment", "minimum", "minimum_true_up", "discount"))


def _meter(line: dict[str, Any]) -> str:
    """The meter of a line (version 1: `meter`; version 2: the `code` of a usage or adjustment line, "" for fees)."""
    if "meter" in line:
        return line["meter"]
    return "" if line.get("kind") in _FEES else line["code"]


def store_invoices(
    client: Client, db: str, invoices: list[dict[str, Any]], chunk: int = 20_000,
    encoded: list[bytes | None] | None = None,
) -> None:  # fmt: skip
    """Insert documents and their lines; the tables replace rows of the same invoice and line number.
    Documents of version 2 (the close's) and version 1 (earlier closes) are both accepted.

    Column-oriented JSON (`JSONCompactColumns`): amounts and quantities go as the documents' own decimal
    text, so ClickHouse parses them exactly and no Decimal is rebuilt here; each document goes as a JSON
    object that ClickHouse keeps as its text (`input_format_json_read_objects_as_strings`), which is
    exactly `orjson.dumps(document)`, with no second encoding. `chunk` invoices per insert. `encoded`: per
    document, that JSON when the caller has it already (`schemas.invoice.encode` of the same document gives the
    same bytes), or None; it is inserted as it is (`orjson.Fragment`) instead of encoding the document again.
    """
    if not invoices:
        return
    now = datetime.now(UTC)
    closed_at = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}"  # DateTime64(3, 'UTC') text
    for start in range(0, len(invoices), chunk):
        docs = invoices[start : start + chunk]
        bodies: list[Any] = docs
        if encoded is not None:
            bodies = [d if e is None else orjson.Fragment(e) for d, e in zip(docs, encoded[start : start + chunk],
                                                                                strict=True)]  # fmt: skip
        client.raw_insert(
            f"{db}.invoices",
            column_names=INVOICE_COLUMNS,
            insert_block=orjson.dumps([
                [d["tenant"] for d in docs], [d["customer"] for d in docs], [d["period"] for d in docs],
                [_invoice_id(d) for d in docs], [d["plan"] or "" for d in docs], [d["currency"] for d in docs],
                [d["subtotal"] for d in docs], [d["total"] for d in docs], [len(d["lines"]) for d in docs],
                bodies, [closed_at] * len(docs),
            ]),
            settings={"input_format_json_read_objects_as_strings": 1},
            fmt="JSONCompactColumns",
        )  # fmt: skip
        columns = _line_columns(docs, closed_at)
        if columns[0]:
            client.raw_insert(
                f"{db}.invoice_lines",
                column_names=LINE_COLUMNS,
                insert_block=orjson.dumps(columns),
                fmt="JSONCompactColumns",
            )


def _line_columns(docs: list[dict[str, Any]], closed_at: str) -> list[list[Any]]:
    """The `LINE_COLUMNS` of every line of `docs`, column by column (a document's fields repeated per line)."""
    lines: list[dict[str, Any]] = []
    tenant: list[str] = []
    customer: list[str] = []
    period: list[str] = []
    currency: list[str] = []
    for d in docs:
        n = len(d["lines"])
        if n:
            lines += d["lines"]
            tenant += [d["tenant"]] * n
            customer += [d["customer"]] * n
            period += [d["period"]] * n
            currency += [d["currency"]] * n
    meter = list(map(_meter, lines))
    return [
        tenant, customer, period, list(map(itemgetter("line_no"), lines)), meter,
        list(map(itemgetter("description"), lines)), list(map(itemgetter("quantity"), lines)),
        list(map(itemgetter("amount"), lines)), currency, [closed_at] * len(lines),
        [line.get("line_key") or m for line, m in zip(lines, meter, strict=True)],
        [line.get("applies_to") or p for line, p in zip(lines, period, strict=True)],
        [line.get("kind") or "usage" for line in lines],
        [line.get("streamed_amount") for line in lines],
    ]  # fmt: skip


class _LedgerLine(msgspec.Struct):
    """The fields of a version 2 line the ledger keeps (amounts as their JSON text: exact, no Decimal built)."""

    line_no: int
    kind: str
    code: str
    description: str
    quantity: str
    amount: str
    applies_to: str | None = None
    line_key: str | None = None
    streamed_amount: str | None = None


class _LedgerDoc(msgspec.Struct):
    """The fields of a version 2 document the ledger keeps; the rest of its JSON is skipped when decoding."""

    tenant: str
    customer: str
    period: str
    id: str
    currency: str
    subtotal: str
    total: str
    lines: list[_LedgerLine]
    plan: str | None = None


_decode_ledger = msgspec.json.Decoder(_LedgerDoc).decode


def store_encoded(client: Client, db: str, encoded: list[bytes]) -> None:
    """`store_invoices` of version 2 documents given as their compact JSON (`schemas.invoice.encode`): the same
    rows, read from the bytes with a typed decoder of the ledger's fields only (no dict of each whole document);
    each document goes in as its bytes. A close calls it per batch of finalized invoices, while its forked worker
    prices the next ones."""
    if not encoded:
        return
    now = datetime.now(UTC)
    closed_at = f"{now:%Y-%m-%d %H:%M:%S}.{now.microsecond // 1000:03d}"  # DateTime64(3, 'UTC') text
    docs = [_decode_ledger(e) for e in encoded]
    client.raw_insert(
        f"{db}.invoices",
        column_names=INVOICE_COLUMNS,
        insert_block=orjson.dumps([
            [d.tenant for d in docs], [d.customer for d in docs], [d.period for d in docs], [d.id for d in docs],
            [d.plan or "" for d in docs], [d.currency for d in docs], [d.subtotal for d in docs],
            [d.total for d in docs], [len(d.lines) for d in docs], list(map(orjson.Fragment, encoded)),
            [closed_at] * len(docs),
        ]),
        settings={"input_format_json_read_objects_as_strings": 1},
        fmt="JSONCompactColumns",
    )  # fmt: skip
    tenant: list[str] = []
    customer: list[str] = []
    period: list[str] = []
    currency: list[str] = []
    lines: list[_LedgerLine] = []
    for d in docs:
        n = len(d.lines)
        if n:
            lines += d.lines
            tenant += [d.tenant] * n
            customer += [d.customer] * n
            period += [d.period] * n
            currency += [d.currency] * n
    if not lines:
        return
    meter = ["" if line.kind in _FEES else line.code for line in lines]
    columns = [
        tenant, customer, period, [line.line_no for line in lines], meter, [line.description for line in lines],
        [line.quantity for line in lines], [line.amount for line in lines], currency, [closed_at] * len(lines),
        [line.line_key or m for line, m in zip(lines, meter, strict=True)],
        [line.applies_to or p for line, p in zip(lines, period, strict=True)],
        [line.kind or "usage" for line in lines],
        [line.streamed_amount for line in lines],
    ]  # fmt: skip
    client.raw_insert(
        f"{db}.invoice_lines", column_names=LINE_COLUMNS, insert_block=orjson.dumps(columns), fmt="JSONCompactColumns"
    )
