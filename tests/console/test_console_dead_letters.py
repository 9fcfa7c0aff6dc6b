"""Dead letters in the console (headless Chromium): the tenant sees its own letters only (a parse error counts by
its Kafka key), an admin replays one from the page onto the real usage topic (session broker), the letter is
marked, and a read key may not replay."""

from __future__ import annotations

import orjson
import pytest

from meterstream.ingest.dlq import REPLAY_HEADER, read_topic
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import Topics

pytestmark = pytest.mark.kafka

RAW = '{"id": "dl-1", "customer": "c9", "meter": "api_calls", "quantity": "2", "time": "2026-12-01T08:00:00Z"}'


def _letter(topic: str, offset: int, tenant: str | None, key: str, raw: str, stage: str, reason: str) -> dict:
    return {"stage": stage, "field": "customer", "reason": reason, "topic": topic, "partition": 0, "offset": offset,
            "key": key, "raw": raw, "event_id": "dl-1" if tenant else None, "tenant": tenant}  # fmt: skip


@pytest.fixture(scope="module")
def letters(console):  # type: ignore[no-untyped-def]
    topics = Topics.from_settings(console.settings)
    producer = make_producer(console.settings)
    for letter in (
        _letter(topics.usage, 7, "acme", "acme/c9", RAW, "rate", "no plan for customer 'c9'"),
        _letter(topics.usage, 8, None, "acme/c1", "not json at all", "parse", "not JSON"),
        _letter(topics.usage, 9, "other", "other/c1", RAW.replace("dl-1", "o-1"), "rate", "other tenant's letter"),
    ):
        producer.produce(topics.dead_letters, value=orjson.dumps(letter), key=letter["key"].encode(), partition=0)
    assert producer.flush(30) == 0
    return topics


def test_the_tenants_letters_only_and_replay_from_the_page(page, console, login, letters) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key(role="admin"))
    with page.expect_navigation():
        page.click("text=Dead letters")
    rows = page.locator("#dead-letters tbody tr")
    sources = rows.evaluate_all("rows => rows.map(r => r.dataset.source)")
    assert sources == [f"{letters.usage}:0:7", f"{letters.usage}:0:8"]  # acme's, and the parse error keyed acme/
    assert "other tenant" not in page.content()
    assert rows.nth(1).locator("input[type=checkbox]").count() == 0  # "not json at all" cannot become an event
    rows.nth(0).locator("input[type=checkbox]").check()
    with page.expect_navigation():
        page.click("#replay")
    assert page.locator("#replayed").inner_text() == "Replayed 1 dead letter."
    assert page.locator(f"tr[data-source='{letters.usage}:0:7'] td.mark").inner_text() != ""  # marked
    assert page.locator(f"tr[data-source='{letters.usage}:0:7'] input[type=checkbox]").count() == 0
    replayed = [m for m in read_topic(console.settings, letters.usage, timeout=30)
                if dict(m.headers() or []).get(REPLAY_HEADER) == f"{letters.usage}:0:7".encode()]  # fmt: skip
    assert [(m.key(), m.value(), m.partition()) for m in replayed] == [(b"acme/c9", RAW.encode(), 0)]


def test_a_read_key_sees_letters_but_may_not_replay(page, console, login, letters) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key(role="read"))
    page.goto(f"{console.url}/console/dead-letters")
    assert page.locator("#dead-letters tbody tr").count() == 2
    assert page.locator("#replay").count() == 0
    refused = page.context.request.post(f"{console.url}/console/dead-letters/replay",
                                        form={"source": f"{letters.usage}:0:7"})  # fmt: skip
    assert refused.status == 403
    assert "may not replay" in refused.text()


def test_a_cross_site_post_is_refused(page, console, login, letters) -> None:  # type: ignore[no-untyped-def]
    login(page, console.key(role="admin"))
    refused = page.context.request.post(f"{console.url}/console/dead-letters/replay", form={
        "source": f"{letters.usage}:0:7"}, headers={"Origin": "http://evil.example"})  # fmt: skip
    assert refused.status == 403
