"""Rated usage rows put straight into the test's ClickHouse database (what the sink would write), for queries."""

from __future__ import annotations

import orjson


def put_rows(om, rows):
    fields = ["tenant", "id", "customer", "subject", "meter", "time", "period", "quantity", "amount", "cumulative",
              "currency", "plan", "line", "dimensions", "source", "src_partition", "src_offset"]  # fmt: skip
    body = b"\n".join(
        orjson.dumps({"tenant": "acme", "period": r["time"][:7], "amount": "0", "cumulative": "0", "currency": "USD",
                      "plan": "p", "line": r["meter"], "source": "app", "src_partition": 0, "src_offset": 0, **r})
        for r in rows
    )  # fmt: skip
    om["chdb"].raw_insert(f"{om['db']}.rated_usage", fields, body, fmt="JSONEachRow")
