"""The analysts' views (docs/analytics.md), created with the other tables by `ddl.create_schema`.

Every view reads `rated_usage FINAL` (or the invoice tables FINAL), so it is exact whatever merges have run,
and every view has a `tenant` column: a tenant reader of the ClickHouse HTTP front sees its own rows of each
(`tenant_access`), as does a tenant user on a ClickHouse server with the row policies of `grants`. Months and
days are of the event time in UTC; `period` is the billing period the stream rated the event into. Money
columns are exact Decimals (sums of the streamed per-event amounts, before the invoice's rounding).
`CREATE OR REPLACE VIEW`: running the DDL again brings a view to this version's definition. Same SQL on chdb
and on a ClickHouse server.
"""

from __future__ import annotations

VIEWS: tuple[tuple[str, str], ...] = (
    # usage by month per customer, subject, meter (hour and day: usage_hourly, usage_daily in schema.sql)
    (
        "usage_monthly",
        """
SELECT tenant, customer, subject, meter, currency, toStartOfMonth(time) AS month,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
FROM {db}.rated_usage FINAL
GROUP BY tenant, customer, subject, meter, currency, month""",
    ),
    # usage per dimension key and value, by hour (sum it to days or months: the sums are exact)
    (
        "usage_dimensions_hourly",
        """
SELECT tenant, customer, subject, meter, currency, toStartOfHour(time) AS hour, dimension, value,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
FROM {db}.rated_usage FINAL
ARRAY JOIN mapKeys(dimensions) AS dimension, mapValues(dimensions) AS value
GROUP BY tenant, customer, subject, meter, currency, hour, dimension, value""",
    ),
    # rated (streamed) revenue by plan, meter and customer, per billing period and event month
    (
        "rated_revenue_monthly",
        """
SELECT tenant, period, toStartOfMonth(time) AS month, plan, meter, customer, currency,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
FROM {db}.rated_usage FINAL
GROUP BY tenant, period, month, plan, meter, customer, currency""",
    ),
    # invoiced revenue: the closed invoices' lines with the invoice's plan (adjustments: kind = 'adjustment')
    (
        "invoiced_revenue",
        """
SELECT l.tenant AS tenant, l.period AS period, l.customer AS customer, i.plan AS plan, l.meter AS meter,
       l.kind AS kind, l.applies_to AS applies_to, l.currency AS currency,
       sum(l.quantity) AS quantity, sum(l.amount) AS amount
FROM {db}.invoice_lines AS l FINAL
LEFT JOIN (SELECT tenant, customer, period, plan FROM {db}.invoices FINAL) AS i
  ON i.tenant = l.tenant AND i.customer = l.customer AND i.period = l.period
GROUP BY tenant, period, customer, plan, meter, kind, applies_to, currency""",
    ),
    # month over month per customer and meter: the previous calendar month's figures (0 when it had none)
    (
        "usage_month_over_month",
        """
SELECT tenant, customer, meter, currency, month, events, quantity, amount,
       sum(events) OVER w AS previous_events,
       sum(quantity) OVER w AS previous_quantity,
       sum(amount) OVER w AS previous_amount,
       quantity - previous_quantity AS quantity_change,
       amount - previous_amount AS amount_change
FROM (
    SELECT tenant, customer, meter, currency, toStartOfMonth(time) AS month,
           toYear(month) * 12 + toMonth(month) AS month_number,
           count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
    FROM {db}.rated_usage FINAL
    GROUP BY tenant, customer, meter, currency, month
)
WINDOW w AS (PARTITION BY tenant, customer, meter, currency ORDER BY month_number
             RANGE BETWEEN 1 PRECEDING AND 1 PRECEDING)""",
    ),
    # customers ranked by rated amount per month and currency: top N is `WHERE rank <= N`
    (
        "customer_ranking_monthly",
        """
SELECT tenant, month, currency, customer, events, quantity, amount,
       rank() OVER (PARTITION BY tenant, month, currency ORDER BY amount DESC, customer) AS rank
FROM (
    SELECT tenant, toStartOfMonth(time) AS month, currency, customer,
           count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
    FROM {db}.rated_usage FINAL
    GROUP BY tenant, month, currency, customer
)""",
    ),
    # daily usage against the trailing average of the 7 calendar days before (days without usage count as 0)
    (
        "usage_spikes_daily",
        """
SELECT tenant, customer, meter, day, events, quantity,
       sum(quantity) OVER w AS trailing_sum_7d, trailing_sum_7d / 7 AS trailing_avg_7d,
       if(trailing_sum_7d > 0, quantity * 7 / trailing_sum_7d, NULL) AS ratio_to_trailing_avg
FROM (
    SELECT tenant, customer, meter, toDate(time) AS day, toUInt32(toDate(time)) AS day_number,
           count() AS events, sum(quantity) AS quantity
    FROM {db}.rated_usage FINAL
    GROUP BY tenant, customer, meter, day
)
WINDOW w AS (PARTITION BY tenant, customer, meter ORDER BY day_number RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING)""",
    ),
    # usage per billing period (and event month) against what invoices charged for it: on the period's own
    # invoice (kind 'usage') and as late-usage adjustments on later ones (applies_to = the period)
    (
        "usage_reconciliation",
        """
SELECT u.tenant AS tenant, u.customer AS customer, u.meter AS meter, u.period AS period,
       u.first_event AS first_event, u.last_event AS last_event, u.events AS events,
       u.quantity AS quantity, u.streamed_amount AS streamed_amount,
       b.invoiced_quantity AS invoiced_quantity, b.invoiced_amount AS invoiced_amount,
       b.adjusted_quantity AS adjusted_quantity, b.adjusted_amount AS adjusted_amount,
       u.quantity - invoiced_quantity - adjusted_quantity AS unbilled_quantity
FROM (
    SELECT tenant, customer, meter, period, min(time) AS first_event, max(time) AS last_event,
           count() AS events, sum(quantity) AS quantity, sum(amount) AS streamed_amount
    FROM {db}.rated_usage FINAL
    GROUP BY tenant, customer, meter, period
) AS u
LEFT JOIN (
    SELECT tenant, customer, meter, applies_to AS period,
           sumIf(quantity, kind != 'adjustment') AS invoiced_quantity,
           sumIf(amount, kind != 'adjustment') AS invoiced_amount,
           sumIf(quantity, kind = 'adjustment') AS adjusted_quantity,
           sumIf(amount, kind = 'adjustment') AS adjusted_amount
    FROM {db}.invoice_lines FINAL
    GROUP BY tenant, customer, meter, period
) AS b ON b.tenant = u.tenant AND b.customer = u.customer AND b.meter = u.meter AND b.period = u.period""",
    ),
)


# cost per user: each invoice line's shares per subject as the invoice documents carry them (billing/allocation.py:
# whole minor units by largest remainder, so a line's shares add up exactly to its amount); version 2 documents
COST_PER_USER = (
    "cost_per_user",
    """
SELECT tenant, customer, period, currency, invoice_id,
       toUInt32(JSONExtractUInt(line, 'line_no')) AS line_no, JSONExtractString(line, 'kind') AS kind,
       JSONExtractString(line, 'code') AS meter, JSONExtractString(line, 'applies_to') AS applies_to,
       JSONExtractString(share, 'subject') AS subject,
       toDecimal128(trim(BOTH '"' FROM JSONExtractRaw(share, 'quantity')), 12) AS quantity,
       toDecimal128(trim(BOTH '"' FROM JSONExtractRaw(share, 'amount')), 6) AS amount,
       toDecimal128(trim(BOTH '"' FROM JSONExtractRaw(line, 'amount')), 6) AS line_amount
FROM (
    SELECT tenant, customer, period, currency, invoice_id, line
    FROM {db}.invoices FINAL
    ARRAY JOIN JSONExtractArrayRaw(document, 'lines') AS line
)
ARRAY JOIN JSONExtractArrayRaw(line, 'subjects') AS share""",
)
VIEWS = (*VIEWS, COST_PER_USER)


def _minor_units_sql() -> str:
    """The currency's minor units in SQL (`rating.money.CURRENCY_MINOR_UNITS`: the codes that are not 2 listed)."""
    from meterstream.rating.money import CURRENCY_MINOR_UNITS

    other = sorted((c, n) for c, n in CURRENCY_MINOR_UNITS.items() if n != 2)
    codes = ", ".join(f"'{c}'" for c, _ in other)
    return f"transform(currency, [{codes}], [{', '.join(str(n) for _, n in other)}], 2)"


# each subject's fair share of its customer's running amount per meter, currency and billing period: the rule of
# `billing.allocation.subject_shares` (the invoices' per-user section, GET /v1/usage?group_by=subject) in SQL.
# The pool's streamed amount (every subject's, '' included) is rounded half away from zero to the currency's minor
# unit (`running_amount`, as its invoice line would be); its absolute value in minor units is split by quantity:
# each subject gets the floor of its exact proportion (integers: quantities as whole 10^-12 units), and the units
# left go one each to the largest remainders, equal remainders by subject id ('' as '(no subject)'); all
# quantities 0: equal parts; a negative amount is split as its absolute value and negated.
SUBJECT_SHARES = (
    "subject_shares_open",
    """
SELECT tenant, customer, meter, currency, period, subject, events, subject_quantity AS quantity, streamed_amount,
       toDecimal128(running_units, 6) / intExp10(minor) AS running_amount,
       toDecimal128(sign(running_units) * (floor_units + (rank <= left_units AND remainder > 0)), 6)
           / intExp10(minor) AS amount
FROM (
    SELECT *, abs_units - sum(floor_units) OVER pool AS left_units,
           row_number() OVER (PARTITION BY tenant, customer, meter, currency, period
                              ORDER BY remainder DESC, if(subject = '', '(no subject)', subject)) AS rank
    FROM (
        SELECT *, intDiv(abs_units * weight, weights) AS floor_units, (abs_units * weight) % weights AS remainder
        FROM (
            SELECT *, {minor} AS minor,
                   toInt256(round(sum(streamed_amount) OVER pool * intExp10(minor), 0)) AS running_units,
                   abs(running_units) AS abs_units,
                   sum(quantity_units) OVER pool AS quantity_total, count() OVER pool AS subjects,
                   if(quantity_total = 0, toInt256(1), quantity_units) AS weight,
                   if(quantity_total = 0, toInt256(subjects), quantity_total) AS weights
            FROM (
                SELECT tenant, customer, meter, currency, period, subject, count() AS events,
                       sum(quantity) AS subject_quantity, sum(toDecimal256(amount, 18)) AS streamed_amount,
                       toInt256(sum(toDecimal256(quantity, 12)) * intExp10(12)) AS quantity_units
                FROM {db}.rated_usage FINAL
                GROUP BY tenant, customer, meter, currency, period, subject
            )
            WINDOW pool AS (PARTITION BY tenant, customer, meter, currency, period)
        )
    )
    WINDOW pool AS (PARTITION BY tenant, customer, meter, currency, period)
)""".replace("{minor}", _minor_units_sql()),
)
VIEWS = (*VIEWS, SUBJECT_SHARES)


def view_names() -> tuple[str, ...]:
    return tuple(name for name, _ in VIEWS)


def statements(db: str) -> list[str]:
    """`CREATE OR REPLACE VIEW` for each view, in database `db`, then the tables written for analysts from outside
    ClickHouse (`revenue_table`: MRR, ARR, churn, NRR; `CREATE TABLE IF NOT EXISTS`)."""
    from meterstream.aggregation import revenue_table

    views = [f"CREATE OR REPLACE VIEW {db}.{name} AS {sql.strip().replace('{db}', db)}" for name, sql in VIEWS]
    return views + revenue_table.statements(db)
