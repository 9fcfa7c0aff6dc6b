"""Per-subject (per-user) quantities of a period's usage, for the invoices' per-user section: read from ClickHouse
(`period_subjects`, `line_subjects`), and which of them a line takes (`subject_quantities_of`, pure: the close's
`with_subject_quantities` and the issued invoice's per-user section both ask it).

The quantities come from the deduplicated `rated_usage` table (FINAL), like the lines themselves; the close
shares each line's amount among them (`billing.allocation.subject_shares`, in `issue.py`), so the shares
are fair and add up exactly to the line whatever the pricing model made of the total.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from meterstream.invoice_emitter.document import decimal_text
from meterstream.rating.money import to_decimal

__all__ = ["Subjects", "line_subjects", "period_subjects", "subject_quantities_of", "with_subject_quantities"]

# (tenant, customer) -> meter -> subject -> quantity
Subjects = dict[tuple[str, str], dict[str, dict[str, Decimal]]]


def period_subjects(client: Client, db: str, period: str, plans: list[str]) -> Subjects:
    """Each customer's quantity per meter and subject in `period`, of the usage rated with `plans` (the catalog
    file's: the lines of the file path). Customers whose usage has no subject at all are left out,
    by ClickHouse (the window `named`: has the customer any subject), so that their rows are neither sent nor decoded
    here (a close whose usage has no subjects read and dropped one row per customer and meter)."""
    if not plans:
        return {}
    rows = client.query(
        f"""
        SELECT tenant, customer, meter, subject, q FROM (
            SELECT tenant, customer, meter, subject, sum(quantity) AS q,
                   max(subject != '') OVER (PARTITION BY tenant, customer) AS named
            FROM {db}.rated_usage FINAL
            WHERE period = {{period:String}} AND plan IN {{plans:Array(String)}}
            GROUP BY tenant, customer, meter, subject
        ) WHERE named
        """,
        parameters={"period": period, "plans": plans},
        settings={"do_not_merge_across_partitions_select_final": 1},
    ).result_rows
    out: Subjects = {}
    for tenant, customer, meter, subject, quantity in rows:
        # without the storage scale's trailing zeros, as the lines show quantities (30.000000000000 -> 30)
        out.setdefault((tenant, customer), {}).setdefault(meter, {})[subject] = Decimal(decimal_text(quantity))
    return {key: meters for key, meters in out.items() if any(s for m in meters.values() for s in m)}


def _micros(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def line_subjects(
    client: Client, db: str, tenant: str, customer: str, lines: list[dict[str, Any]], skip_plans: list[str]
) -> dict[str, dict[str, Decimal]]:
    """Per subscription usage line (by `line_key`): the quantity per subject of the line's meter within the
    line's [start, end), from the usage not rated with `skip_plans` (the catalog file's, billed by the file
    path). One query per customer: usage by subject between consecutive line bounds, summed per line (the
    subject "" for usage without one; the issued invoice shares a line by them when the document has any
    named subject)."""
    wanted = [ln for ln in lines if ln.get("kind") == "usage" and ln.get("line_key") and ln.get("start")
              and ln.get("end") and ln.get("meter")]  # fmt: skip
    if not wanted:
        return {}
    spans = {ln["line_key"]: (_micros(_instant(ln["start"])), _micros(_instant(ln["end"]))) for ln in wanted}
    bounds = sorted({b for span in spans.values() for b in span})
    rows = client.query(
        f"""
        SELECT arrayCount(b -> b <= toUnixTimestamp64Micro(time), {{bounds:Array(Int64)}}) AS piece,
               meter, subject, sum(quantity)
        FROM {db}.rated_usage FINAL
        WHERE tenant = {{tenant:String}} AND customer = {{customer:String}}
          AND time >= fromUnixTimestamp64Micro({{lo:Int64}}, 'UTC')
          AND time < fromUnixTimestamp64Micro({{hi:Int64}}, 'UTC')
          AND plan NOT IN {{skip:Array(String)}}
        GROUP BY piece, meter, subject
        """,
        parameters={"bounds": bounds, "tenant": tenant, "customer": customer, "lo": bounds[0], "hi": bounds[-1],
                    "skip": skip_plans},
        settings={"do_not_merge_across_partitions_select_final": 1},
    ).result_rows  # fmt: skip
    # piece i (1-based) is [bounds[i-1], bounds[i])
    by_piece: dict[tuple[str, int], dict[str, Decimal]] = {}
    for piece, meter, subject, quantity in rows:
        slot = by_piece.setdefault((meter, bounds[int(piece) - 1]), {})
        slot[subject] = slot.get(subject, Decimal(0)) + quantity
    out: dict[str, dict[str, Decimal]] = {}
    for ln in wanted:
        lo, hi = spans[ln["line_key"]]
        found: dict[str, Decimal] = {}
        for (meter, start), subjects in by_piece.items():
            if meter == ln["meter"] and lo <= start < hi:
                for subject, q in subjects.items():
                    found[subject] = found.get(subject, Decimal(0)) + q
        if found:
            out[ln["line_key"]] = {s: Decimal(decimal_text(q)) for s, q in found.items()}
    return out


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def subject_quantities_of(
    line: Mapping[str, Any],
    by_meter: Mapping[str, Mapping[str, Decimal]] | None = None,
    by_key: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> Mapping[str, Decimal] | None:
    """A version 1 line's quantity per subject, in the one order of precedence the close and the issued invoice
    share: the line's own `subject_quantities` (telecom lines, late usage), else `by_key` by its line key
    (`line_subjects`: subscription usage), else `by_meter` by its meter (`period_subjects`: a line without a line
    key). None when none of them has the line."""
    own = line.get("subject_quantities")
    if own is not None:
        return {s: to_decimal(q) for s, q in own.items()}
    key = line.get("line_key")
    if key:
        return (by_key or {}).get(key)
    return (by_meter or {}).get(line.get("code") or line.get("meter") or "")


def with_subject_quantities(
    lines: list[dict[str, Any]],
    by_meter: Mapping[str, Mapping[str, Decimal]] | None = None,
    by_key: Mapping[str, Mapping[str, Decimal]] | None = None,
) -> list[dict[str, Any]]:
    """`lines` (version 1) with `subject_quantities` (subject -> quantity text) on the usage lines that have none
    yet, found as `subject_quantities_of` finds them. Late usage is shared by the difference of these
    (`adjustments.late_subjects`)."""
    out = []
    for line in lines:
        if "subject_quantities" not in line and line.get("kind", "usage") == "usage":
            found = subject_quantities_of(line, by_meter, by_key)
            if found:
                line = {**line, "subject_quantities": {s: decimal_text(q) for s, q in sorted(found.items())}}
        out.append(line)
    return out
