"""The console in headless Chromium (Playwright, Debian's chromium) against the API app on a real server, with
hand-made data (tests/console/conftest.py): login, customers and charts, running amounts, invoices, health, and
that another tenant's data never shows."""

from __future__ import annotations

import os

import pytest
from console_seed import day

from meterstream.ops_http import serve_ops

pytestmark = pytest.mark.kafka


def test_login_refuses_a_bad_key_and_an_ingest_key(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, "msk_0000000000000000.not-a-key")
    assert page.locator(".error").inner_text() == "unknown or revoked API key"
    assert page.context.cookies() == []
    login(page, console.key(role="ingest"))
    assert "may not read" in page.locator(".error").inner_text()
    assert page.context.cookies() == []
    page.goto(f"{console.url}/console/customers")  # no session: sent to the login page
    assert page.url.endswith("/console/login")


def test_the_session_cookie_is_httponly_secure_strict_and_logout_ends_it(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key())
    assert page.url.endswith("/console/customers")
    [cookie] = page.context.cookies()
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (True, True, "Strict",
                                                                                          "/console")  # fmt: skip
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    answer = page.context.request.get(f"{console.url}/console/customers")
    assert answer.headers["cache-control"] == "no-store"  # tenant data is never cached
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'none': no script runs
    with page.expect_navigation():
        page.click("text=Log out")
    assert page.url.endswith("/console/login")
    page.goto(f"{console.url}/console/invoices")
    assert page.url.endswith("/console/login")


def test_a_revoked_key_signs_out_at_the_next_page(page, console, login) -> None:  # type: ignore[no-untyped-def]
    info, token = console.app.state.keys.create("acme", "read", "to revoke")
    login(page, token)
    assert page.locator("#tenant").inner_text() == "acme"
    console.app.state.keys.revoke(info.key_id)
    page.goto(f"{console.url}/console/customers")
    assert page.url.endswith("/console/login")


def test_customers_with_this_periods_running_amount_and_only_the_tenants(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key())
    rows = page.locator("#customers tbody tr")
    ids = rows.locator("td:first-child").all_inner_texts()
    assert ids == ["c1", "c2"]  # c1 from the store (and usage), c2 from usage only; never other's secret-co
    c2 = rows.nth(1).locator("td").all_inner_texts()
    assert c2 == ["c2", "", "1.51 EUR", "2"]  # 1.005 + 0.5 = 1.505, rounded half away from zero
    assert rows.nth(0).locator("td").nth(1).inner_text() == "Acme Robotics"
    assert "secret" not in page.content().lower()


def test_a_customers_charts_per_meter_and_per_subject(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key())
    with page.expect_navigation():
        page.click("#customers a:text-is('c1')")
    assert page.locator("h1").inner_text().startswith("Customer c1")

    def bars(kind: str, title: str) -> list[tuple[str | None, str | None]]:
        chart = page.locator(f"svg.chart.{kind}[data-title='{title}']")
        assert chart.count() == 1
        return [(b.get_attribute("data-day"), b.get_attribute("data-value")) for b in chart.locator("rect.bar").all()]

    assert page.locator("svg.chart.meter").count() == 3
    assert bars("meter", "api_calls") == [(day(3), "150"), (day(1), "30")]  # 100 + 50; other's 7777 absent
    assert bars("meter", "minutes") == [(day(0), "120")]
    assert bars("meter", "storage_gb_hours") == [(day(0), "1000")]
    assert page.locator("svg.chart.subject").count() == 3
    # amounts per user are fair shares of the customer's amount per meter and period, rounded to cents like an
    # invoice line: api_calls at 0.002 a call shares as it streamed (0.20, 0.06; u2 0.10), storage 0.137 -> 0.14;
    # minutes (volume pricing): 54.00 shared 80 : 40 -> u2 36.00, u3 18.00, where u3 streamed -26.00
    assert bars("subject", "u1") == [(day(3), "0.2"), (day(1), "0.06"), (day(0), "0.14")]
    assert bars("subject", "u2") == [(day(3), "0.1"), (day(0), "36")]
    assert bars("subject", "u3") == [(day(0), "18")]
    # the bars are drawn: the taller one for the larger day (150 vs 30 calls)
    tall, short = (page.locator("svg.chart.meter[data-title='api_calls'] rect.bar").nth(i).bounding_box()
                   for i in (0, 1))  # fmt: skip
    assert tall and short and tall["height"] == pytest.approx(5 * short["height"], rel=0.02)
    shot = os.environ.get("METERSTREAM_CONSOLE_SCREENSHOT")  # README image: docs/img/console.png
    if shot:
        page.screenshot(path=shot, full_page=True)


def test_a_customers_running_amount_and_invoices(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key())
    page.goto(f"{console.url}/console/customers/c2")
    assert page.locator("#running tfoot").inner_text().split() == ["total", "1.51", "EUR"]
    assert page.locator("#running tbody td").all_inner_texts() == ["api_calls", "5", "1.505", "EUR", "2"]
    assert page.locator("#customer-invoices tbody tr").count() == 1  # the draft of c2
    assert page.locator("#customer-invoices td.status").inner_text() == "draft"


def test_invoices_with_html_and_pdf_and_drafts(page, console, login) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key())
    with page.expect_navigation():
        page.click("text=Invoices")
    rows = page.locator("table.invoices tbody tr")
    assert sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.invoice)")) == ["inv-acme-1", "inv-acme-2"]
    page.select_option("#status", "draft")
    with page.expect_navigation():
        page.click("text=Show")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.invoice)") == ["inv-acme-2"]
    page.goto(f"{console.url}/console/invoices")
    with page.expect_navigation():
        page.locator("tr[data-invoice='inv-acme-1'] >> text=HTML").click()
    assert "1,324.07" in page.content()  # the sample invoice's total (tests/documents/invoice_samples.py)
    pdf = page.context.request.get(f"{console.url}/console/invoices/inv-acme-1.pdf")
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.body().startswith(b"%PDF-")
    other = page.context.request.get(f"{console.url}/console/invoices/inv-other-1.html")
    assert other.status == 404  # another tenant's invoice, even by its id


def test_pipeline_health_reads_the_processors_healthz(page, console, login) -> None:  # type: ignore[no-untyped-def]
    s = console.settings
    ops = serve_ops(s.processor_metrics_port, lambda: (True, {"events": 42, "lag": 0}), host=s.ops_host)
    try:
        login(page, console.key())
        with page.expect_navigation():
            page.click("text=Health")
        rows = page.locator("#pipeline-health tbody tr")
        worker = rows.nth(0).locator("td").all_inner_texts()
        assert worker[:2] == ["processor worker 0", "ok"] and "events: 42" in worker[2]
        assert rows.nth(1).locator("td").all_inner_texts()[:2] == ["sink", "not ok"]  # nothing runs on its port
        api = dict(tuple(r.locator("td").all_inner_texts()[:2]) for r in page.locator("#api-health tbody tr").all())
        assert api == {"Kafka": "ok", "ClickHouse": "ok", "SQL store": "ok"}
    finally:
        ops.shutdown()
        ops.server_close()
