"""Per-subject (per-user) quantities of a period's usage, for the invoices' per-user section (ClickHouse I/O only).

The quantities come from the deduplicated `rated_usage` table (FINAL), like the lines themselves; the close
shares each line's amount among them (`billing.allocation.subject_shares`, in `issue.py`), so the shares
are fair and add up exactly to the line whatever the pricing model made of the total.
"""

from __future__ import annotations

from decimal import Decimal

from clickhouse_connect.driver.client import Client

from meterstream.invoice_emitter.document import decimal_text

__all__ = ["Subjects", "period_subjects"]

# (tenant, customer) -> meter -> subject -> quantity
Subjects = dict[tuple[str, str], dict[str, dict[str, Decimal]]]


def period_subjects(client: Client, db: str, period: str, plans: list[str]) -> Subjects:
    """Each customer's quantity per meter and subject in `period`, of the usage rated with `plans` (the catalog
    file's: the lines of the file path). Customers whose usage has no subject at all are left out."""
    if not plans:
        return {}
    rows = client.query(
        f"""
        SELECT tenant, customer, meter, subject, sum(quantity)
        FROM {db}.rated_usage FINAL
        WHERE period = {{period:String}} AND plan IN {{plans:Array(String)}}
        GROUP BY tenant, customer, meter, subject
        """,
        parameters={"period": period, "plans": plans},
        settings={"do_not_merge_across_partitions_select_final": 1},
    ).result_rows
    out: Subjects = {}
    for tenant, customer, meter, subject, quantity in rows:
        # without the storage scale's trailing zeros, as the lines show quantities (30.000000000000 -> 30)
        out.setdefault((tenant, customer), {}).setdefault(meter, {})[subject] = Decimal(decimal_text(quantity))
    return {key: meters for key, meters in out.items() if any(s for m in meters.values() for s in m)}
