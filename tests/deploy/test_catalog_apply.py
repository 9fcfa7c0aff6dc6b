"""`meterstream catalog apply` (entities/catalog_apply.py) on SQLite AND PostgreSQL: today's catalog format
and the extended one, idempotent like `kubectl apply`, a changed plan moving the file's subscriptions to its
new version from now on, and bad files refused with the file's field path before anything is written.

Expected counts and phases are worked out by hand from the files below.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from meterstream.deploy.cli import main
from meterstream.entities.catalog_apply import EPOCH, CatalogApplyError, apply_catalog, apply_file
from meterstream.entities.customers import get_customer_doc, list_customer_docs
from meterstream.entities.db import make_engine, migrate, session_factory
from meterstream.entities.outbox import read_outbox
from meterstream.entities.plans import get_plan, list_plans
from meterstream.entities.subscriptions import get_subscription, list_subscriptions
from meterstream.rating.telecom import load_telecom_csv, parse_telecom_plan

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "catalog.yaml"
NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

TODAY = """
version: 1
plans:
  - id: basic
    currency: USD
    meters:
      api_calls: {model: unit, unit_amount: "0.001"}
  - id: unused
    currency: USD
    meters:
      api_calls: {model: unit, unit_amount: "0.5"}
assignments:
  - {tenant: t1, customer: "*", plan: basic}
  - {tenant: t1, customer: org-1, plan: basic}
  - {tenant: t2, customer: "*", plan: basic}
"""


@pytest.fixture
def sf(fresh_url: str):  # type: ignore[no-untyped-def]
    """A migrated, empty store of each kind, SQLite and PostgreSQL (tests/conftest.py fresh_url)."""
    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    yield session_factory(engine)
    engine.dispose()


def outcomes(result) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return sorted((c.kind, c.name, c.outcome) for c in result.changes)


def test_todays_format_applies_then_changes_nothing(sf) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(TODAY)
    first = apply_catalog(sf, data, now=NOW)
    # basic is published once per tenant assigning it (t1, t2); `unused` has no tenant: not published
    assert outcomes(first) == [
        ("customer", "t1/org-1", "created"),
        ("plan", "t1/basic@1", "created"),
        ("plan", "t2/basic@1", "created"),
        ("subscription", "t1/catalog-*", "created"),
        ("subscription", "t1/catalog-org-1", "created"),
        ("subscription", "t2/catalog-*", "created"),
    ]
    assert any("unused" in w for w in first.warnings)
    assert first.summary() == "6 created"
    sub = get_subscription(sf, "t1", "catalog-org-1")
    assert (sub.customer, [(p.plan_code, p.plan_version, p.start, p.end) for p in sub.phases]) == (
        "org-1", [("basic", 1, EPOCH, None)])  # fmt: skip
    assert get_subscription(sf, "t1", "catalog-*").customer == "*"
    assert get_customer_doc(sf, "t1", "org-1").name == "org-1"
    written = len(read_outbox(sf, 0, 1000))
    second = apply_catalog(sf, data, now=NOW)
    assert second.summary() == "6 unchanged"
    assert len(read_outbox(sf, 0, 1000)) == written  # nothing was written the second time


def test_a_changed_plan_publishes_a_version_and_moves_the_subscriptions_from_now(sf) -> None:  # type: ignore[no-untyped-def]
    apply_catalog(sf, yaml.safe_load(TODAY), now=NOW)
    dearer = yaml.safe_load(TODAY.replace('unit_amount: "0.001"', 'unit_amount: "0.0015"'))
    result = apply_catalog(sf, dearer, now=NOW)
    assert result.summary() == "5 changed, 1 unchanged"  # 2 plan versions, 3 subscriptions; the customer stays
    assert ("plan", "t1/basic@2", "changed") in outcomes(result)
    assert get_plan(sf, "t1", "basic").usage["api_calls"]["unit_amount"] == "0.0015"
    assert get_plan(sf, "t1", "basic", 1).usage["api_calls"]["unit_amount"] == "0.001"  # v1 kept as published
    sub = get_subscription(sf, "t1", "catalog-org-1")
    assert [(p.plan_version, p.start, p.end) for p in sub.phases] == [(1, EPOCH, NOW), (2, NOW, None)]
    assert apply_catalog(sf, dearer, now=NOW).summary() == "6 unchanged"


def test_the_demo_catalog_applies(sf) -> None:  # type: ignore[no-untyped-def]
    result = apply_file(sf, REPO / "deploy" / "demo_catalog.yaml", now=NOW)
    # plans per tenant: telecom-standard (telco), cloud-standard (cloudco, saasco), cloud-enterprise (cloudco,
    # iotco) = 5; subscriptions: 7 assignments; customers: org-000..002 = 3
    assert result.summary() == "15 created"
    telecom = get_plan(sf, "telco", "telecom-standard")
    assert telecom.telecom is not None and "file" not in telecom.telecom  # inlined: the store keeps no paths
    assert apply_file(sf, REPO / "deploy" / "demo_catalog.yaml", now=NOW).summary() == "15 unchanged"


def test_the_documented_example_applies_cleanly(sf) -> None:  # type: ignore[no-untyped-def]
    result = apply_file(sf, EXAMPLE, now=NOW)
    assert result.warnings == []
    # customers org-7, org-8; plans api-pro, priority-support, starter; subscriptions org-7-main, catalog-org-8,
    # catalog-*
    assert result.summary() == "8 created"
    org7 = get_customer_doc(sf, "acme", "org-7")
    assert (org7.legal_name, org7.timezone, org7.payment_terms_days, org7.address.city) == (
        "Org Seven GmbH", "Europe/Berlin", 14, "Berlin")  # fmt: skip
    pro = get_plan(sf, "acme", "api-pro")
    assert [(f.code, f.amount, f.interval, f.timing) for f in pro.fixed] == [
        ("platform", Decimal("49.00"), "monthly", "advance"),
        ("support", Decimal("120.00"), "quarterly", "arrears"),
    ]
    assert [(i.code, i.total, i.count) for i in pro.installments] == [("hardware", Decimal("600.00"), 3)]
    assert pro.minimum_commitment == Decimal("100.00")
    assert get_plan(sf, "acme", "priority-support").addon is True
    sub = get_subscription(sf, "acme", "org-7-main")
    assert sub.billing_anchor == "anniversary"
    assert sub.phases[0].start == datetime(2026, 11, 14, 23, 0, tzinfo=UTC)  # 2026-11-15T00:00+01:00
    assert sub.trial_end == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert sub.phases[0].fixed_overrides == {"platform": Decimal("39.00")}
    assert sub.phases[0].addons == ["priority-support"]
    assert apply_file(sf, EXAMPLE, now=NOW).summary() == "8 unchanged"


def test_a_changed_customer_is_updated(sf) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(EXAMPLE.read_text())
    apply_catalog(sf, data, now=NOW)
    data["customers"][0]["payment_terms_days"] = 30
    result = apply_catalog(sf, data, now=NOW)
    assert result.summary() == "1 changed, 7 unchanged"
    doc = get_customer_doc(sf, "acme", "org-7")
    assert (doc.payment_terms_days, doc.version) == (30, 2)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["plans"][0]["fixed"][0].update(amount=49.5), "plans[0].fixed[0].amount: write amounts as quoted"),
        (  # tiers 10000, 5000, open: unordered
            lambda d: d["plans"][0]["usage"]["api_calls"]["tiers"].insert(1, {"up_to": "5000", "unit_amount": "0"}),
            "plans[0].usage.api_calls.tiers[1]",
        ),
        (lambda d: d["plans"][0]["fixed"][0].update(amount="-1.00"), "plans[0].fixed[0].amount: must not be negative"),
        (lambda d: d["plans"][1].update(currency="EURO"), "plans[1].currency"),
        (lambda d: d["customers"][0].update(colour="blue"), "customers[0].colour: unknown field"),
        (lambda d: d["customers"][1].update(timezone="Mars/Base"), "customers[1].timezone"),
        (
            lambda d: d["subscriptions"][0].update(start="2026-11-15T00:00:00"),
            "subscriptions[0].start: needs an offset",
        ),
        (lambda d: d.pop("tenant"), "customers[0].tenant: required"),
        (lambda d: d["plans"][0].update(id="x"), "plans[0].code: give `code` or `id`"),
    ],
)
def test_a_bad_file_names_the_field_and_writes_nothing(sf, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(EXAMPLE.read_text())
    edit(data)
    with pytest.raises(CatalogApplyError) as err:
        apply_catalog(sf, data, base_dir=EXAMPLE.parent, now=NOW)
    assert message in str(err.value)
    assert read_outbox(sf, 0, 10) == []
    assert list_customer_docs(sf, "acme") == [] and list_plans(sf, "acme") == []


def test_todays_format_errors_are_todays(sf) -> None:  # type: ignore[no-untyped-def]
    data = yaml.safe_load(TODAY)
    data["plans"][0]["meters"]["api_calls"]["unit_amount"] = 0.001  # unquoted in YAML: a float
    with pytest.raises(CatalogApplyError) as err:
        apply_catalog(sf, data, now=NOW)
    assert str(err.value).startswith("plans[0].meters.api_calls.unit_amount")
    assert read_outbox(sf, 0, 10) == []


def test_tenant_filter(sf) -> None:  # type: ignore[no-untyped-def]
    result = apply_catalog(sf, yaml.safe_load(TODAY), tenants=["t2"], now=NOW)
    # one --tenant is also the tenant of what names none: `unused` (no assignment) is published to t2 too
    assert outcomes(result) == [
        ("plan", "t2/basic@1", "created"),
        ("plan", "t2/unused@1", "created"),
        ("subscription", "t2/catalog-*", "created"),
    ]
    assert result.warnings == []
    assert list_plans(sf, "t1") == [] and list_subscriptions(sf, "t1") == []
    both = apply_catalog(sf, yaml.safe_load(TODAY), tenants=["t1", "t2"], now=NOW)
    # t1 created: basic, org-1, 2 subscriptions; t2 unchanged: basic, catalog-*; `unused` names no tenant: left out
    assert both.summary() == "4 created, 2 unchanged"


def test_telecom_csv_is_inlined(sf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv_dir = REPO / "rating" / "telecom" / "examples" / "csv"
    data = {"plans": [{"id": "mobile", "currency": "EUR", "telecom": {"csv": str(csv_dir)}}],
            "assignments": [{"tenant": "telco", "customer": "*", "plan": "mobile"}]}  # fmt: skip
    assert apply_catalog(sf, data, now=NOW).summary() == "2 created"
    stored = get_plan(sf, "telco", "mobile").telecom
    assert "csv" not in stored
    assert parse_telecom_plan(stored, currency="EUR") == load_telecom_csv(csv_dir, currency="EUR")
    assert apply_catalog(sf, data, now=NOW).summary() == "2 unchanged"


def test_cli_apply_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(TODAY)
    assert main(["catalog", "apply", str(catalog)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "subscription t1/catalog-org-1 created (basic@1)" in out
    assert out[-1] == "6 created"
    assert main(["catalog", "apply", str(catalog)]) == 0
    assert capsys.readouterr().out.splitlines() == ["6 unchanged"]
    assert main(["customers", "list", "--tenant", "t1"]) == 0
    assert "org-1" in capsys.readouterr().out
    assert main(["plans", "list", "--tenant", "t2"]) == 0
    assert "basic" in capsys.readouterr().out
    assert main(["subscriptions", "list", "--tenant", "t1", "--customer", "org-1"]) == 0
    listed = capsys.readouterr().out
    assert "catalog-org-1" in listed and "catalog-*" not in listed
    catalog.write_text(TODAY.replace('"0.001"', "0.001"))
    assert main(["catalog", "apply", str(catalog)]) == 2
    assert "plans[0].meters.api_calls.unit_amount" in capsys.readouterr().err


def test_cli_lists_without_rich_are_tab_separated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("METERSTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METERSTREAM_DATABASE_URL", raising=False)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(TODAY)
    assert main(["catalog", "apply", str(catalog)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "rich.console", None)  # as if rich were not installed
    assert main(["subscriptions", "list", "--tenant", "t2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "external_id\tcustomer\tstatus\tanchor\tphases\tversion",
        "catalog-*\t*\tactive\tcalendar\tbasic@1 [1970-01-01T00:00:00Z, ...)\t1",
    ]


def test_cli_apply_refuses_a_start_inside_a_month_closed_for_every_customer(tmp_path: Path) -> None:
    """The CLI reads `period_closes` of the embedded store (real chdb, in child processes: chdb opens one store
    per process) and hands it to the apply: a customer the close never invoiced (no boundary of its own in the
    entity store) cannot get a subscription starting in the closed October; November (not closed) is accepted.
    Both dates lie before the month the test runs in (December 2026 or later), so the closed month is read."""
    import json
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("METERSTREAM_")}
    env["METERSTREAM_HOME"] = str(tmp_path / "home")
    close_october = (
        "from meterstream.schemas.settings import Settings\n"
        "from meterstream.aggregation.client import connect\n"
        "from meterstream.aggregation.ddl import create_schema\n"
        "from meterstream.invoice_emitter.ledger import mark_closed\n"
        "s = Settings(); c = connect(s); create_schema(c, s.clickhouse_database)\n"
        "mark_closed(c, s.clickhouse_database, '2026-10')\n"
    )
    subprocess.run([sys.executable, "-c", close_october], env=env, check=True, timeout=120)

    def apply(start: str) -> subprocess.CompletedProcess:
        sub = {"external_id": "sub-9", "customer": "org-9", "plan": "pro", "start": start}
        doc = {"tenant": "t1", "customers": [{"external_id": "org-9", "name": "Org Nine", "currency": "USD"}],
               "plans": [{"code": "pro", "name": "Pro", "currency": "USD",
                          "usage": {"api_calls": {"model": "unit", "unit_amount": "0.002"}}}],
               "subscriptions": [sub]}  # fmt: skip
        path = tmp_path / "catalog.yaml"
        path.write_text(json.dumps(doc))  # JSON is YAML
        cli = [sys.executable, "-m", "meterstream.deploy.cli", "catalog", "apply", str(path)]
        return subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)

    refused = apply("2026-10-20T00:00:00Z")
    assert refused.returncode == 2, refused.stderr
    assert "subscriptions[0].start" in refused.stderr and "finalized" in refused.stderr
    assert "2026-11-01" in refused.stderr  # the end of the closed October, UTC (the customer's zone)
    accepted = apply("2026-11-05T00:00:00Z")
    assert accepted.returncode == 0, accepted.stderr
    assert "warning: closed periods not read" not in accepted.stderr
