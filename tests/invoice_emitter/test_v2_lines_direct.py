"""The close's documents carry their lines already as version 2 lines (document.py builds them with the version 1
lines, `schemas.invoice.V1Invoice`); `from_v1` and `issue_draft` must give the same bytes as converting the
version 1 lines one by one, which is what a plain dict copy of the same document gets. Differential: catalog
plans and generated plans (graduated, volume, unit, package prices) with generated customers' usage, repeated
quantities included (cached quotes whose version 2 line is reused with another number and event count)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from meterstream.aggregation.usage_query import MeterUsage
from meterstream.invoice_emitter.document import MeterPricer, invoice_and_differences, with_lines
from meterstream.invoice_emitter.issue import issue_draft
from meterstream.rating.catalog import load_catalog, parse_catalog
from meterstream.schemas.invoice import V1Invoice, encode, from_v1
from meterstream.schemas.settings import Settings

CATALOG = load_catalog(Path(__file__).resolve().parents[1] / "data" / "catalog.yaml")


def _issuing():  # the demo issuer (German seller, EU VAT table): no settings file needed
    from meterstream.invoice_emitter.issue import Issuing

    return Issuing.from_settings(Settings())


ISSUING = _issuing()


def _same(doc: dict) -> None:
    """The document's own conversion (its carried lines) equals the line-by-line one of a plain copy."""
    assert type(doc) is V1Invoice and doc.converted is not None
    plain = dict(doc)
    assert type(plain) is dict
    direct, by_line = from_v1(doc), from_v1(plain)
    assert direct == by_line
    assert encode(direct) == encode(by_line)
    assert encode(issue_draft(doc, ISSUING)) == encode(issue_draft(plain, ISSUING))


def test_catalog_plans_cached_and_fresh() -> None:
    pricer = MeterPricer()
    for plan_id, tenant in (("basic", "t1"), ("bulk", "t2")):
        plan = CATALOG.plans[plan_id]
        meters = sorted(plan.prices)
        for n, q in enumerate(("0", "113.000000000000", "113", "7.5", "113.000000000000", "1250.750000000000")):
            rows = [MeterUsage(tenant, f"c{n}", plan_id, plan.currency, m, Decimal(q), n + k, Decimal(0))
                    for k, m in enumerate(meters[: 1 + n % len(meters)])]  # fmt: skip
            for p in (pricer, None):  # a cached quote (second time) and a fresh one
                doc, _ = invoice_and_differences(tenant, f"c{n}", "2026-10", plan, rows, None, p)
                _same(doc)
    # the v2 line of a repeat is the first one's with its own number and events
    doc, _ = invoice_and_differences("t1", "x", "2026-10", CATALOG.plans["basic"],
                                     [MeterUsage("t1", "x", "basic", "USD", "storage_gb_hours", Decimal("113"), 41,
                                                 Decimal(0))], None, pricer)  # fmt: skip
    (line,) = from_v1(doc).lines
    assert (line.line_no, line.events, line.quantity, line.amount) == (1, 41, Decimal("113"), Decimal("0.11"))


def test_a_changed_document_is_converted_line_by_line() -> None:
    plan = CATALOG.plans["basic"]
    rows = [MeterUsage("t1", "c", "basic", "USD", "api_calls", Decimal("20"), 2, Decimal(0))]
    doc, _ = invoice_and_differences("t1", "c", "2026-10", plan, rows, None, MeterPricer())
    extra = {"kind": "adjustment", "meter": "api_calls", "description": "late", "quantity": "1", "amount": "0.50",
             "applies_to": "2026-09"}  # fmt: skip
    more = with_lines(doc, [extra])  # a copy: plain dict, its lines converted one by one
    assert type(more) is dict
    assert [line.code for line in from_v1(more).lines] == ["api_calls", "api_calls"]
    period = V1Invoice(doc)  # the same lines under another period: the carried lines are not taken
    period.converted = doc.converted
    period["period"] = "2026-11"
    (line,) = from_v1(period).lines
    assert line.start.month == 11  # 20 calls: 10 free + 10 x 0.50 = 5.00, covering November now
    assert line.amount == Decimal("5.00")


def _price(kind: str, amounts: list[str], bounds: list[int]) -> dict:
    if kind == "unit":
        return {"model": "unit", "unit_amount": amounts[0]}
    if kind == "package":
        return {"model": "package", "package_size": str(bounds[0] or 1), "package_amount": amounts[0],
                "rounding": "up"}  # fmt: skip
    ups = sorted({b + 1 for b in bounds})
    tiers = [{"up_to": str(u), "unit_amount": a} for u, a in zip(ups, amounts, strict=False)]
    tiers.append({"up_to": None, "unit_amount": amounts[-1]})
    if kind == "volume":
        for t in tiers:
            t["flat_amount"] = amounts[0]
    return {"model": kind, "tiers": tiers}


amount = st.decimals(min_value=0, max_value=50, places=4).map(lambda d: format(d, "f"))
prices = st.tuples(st.sampled_from(["unit", "package", "graduated", "volume"]), st.lists(amount, min_size=1,
                   max_size=3), st.lists(st.integers(0, 500), min_size=1, max_size=3))  # fmt: skip
quantity = st.one_of(st.sampled_from(["0", "10", "10.000000000000", "250"]),
                     st.decimals(min_value=0, max_value=100_000, places=6).map(lambda d: format(d, "f")))  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(prices, min_size=1, max_size=4), st.lists(st.lists(st.tuples(st.integers(0, 3), quantity,
       st.integers(0, 9)), max_size=4), min_size=1, max_size=6), st.sampled_from(["EUR", "USD", "JPY"]))  # fmt: skip
def test_generated_plans_and_customers(priced: list, customers: list, currency: str) -> None:
    meters = {f"m{k}_x": _price(*p) for k, p in enumerate(priced)}
    try:
        catalog = parse_catalog({"plans": [{"id": "gen", "currency": currency, "meters": meters}],
                                 "assignments": [{"tenant": "t", "customer": "*", "plan": "gen"}]})  # fmt: skip
    except ValueError:
        assume(False)  # a generated price the catalog refuses
    plan = catalog.plans["gen"]
    event("plan accepted")
    pricer = MeterPricer()
    for n, uses in enumerate(customers):
        by_meter = {f"m{k % len(priced)}_x": (q, e) for k, q, e in uses}
        rows = [MeterUsage("t", f"c{n}", "gen", currency, m, Decimal(q), e, Decimal(0))
                for m, (q, e) in sorted(by_meter.items())]  # fmt: skip
        doc, _ = invoice_and_differences("t", f"c{n}", "2026-02", plan, rows, None, pricer)
        _same(doc)
