"""The reference provisioning consumer (deploy/provisioning_consumer.py): reasons per customer, each id applied
once, a reactivate lifts only its own reason; and over a real broker, a redelivered command and a message that is
not a command change nothing."""

from __future__ import annotations

import uuid

import pytest

from meterstream.deploy.provisioning_consumer import ProvisioningState, main_provisioning
from meterstream.ingest.producer import make_producer
from meterstream.ingest.topics import ensure_topics
from meterstream.schemas.provisioning import PROVISIONING, ProvisioningCommand, customer_key, encode


def cmd(i: str, command: str, reason: str, customer: str = "c1") -> ProvisioningCommand:
    return ProvisioningCommand(id=i, tenant="t", customer=customer, command=command, reason=reason,  # type: ignore[arg-type]
                               cause="test", state={}, at="2026-12-01T10:00:00+00:00")  # fmt: skip


def test_two_reasons_and_a_reactivate_lifts_only_its_own(tmp_path) -> None:
    s = ProvisioningState(tmp_path / "p.sqlite")
    assert s.apply(cmd("1", "suspend", "balance_exhausted")).state == "suspended"
    assert s.apply(cmd("2", "suspend", "invoice_overdue")).state == "suspended"
    after = s.apply(cmd("3", "reactivate", "balance_exhausted"))
    assert (after.state, after.suspended) == ("suspended", ("invoice_overdue",))  # still overdue
    again = s.apply(cmd("1", "suspend", "balance_exhausted"))  # a redelivery of id 1: applied once only
    assert not again.new and again.suspended == ("invoice_overdue",)
    assert s.apply(cmd("4", "reactivate", "invoice_overdue")).state == "active"
    assert s.apply(cmd("5", "limit", "credit_limit_exceeded")).state == "limited"
    assert s.state("t", "c2") == "active"


@pytest.mark.kafka
def test_the_consumer_over_kafka_applies_each_id_once(kafka_settings, tmp_path) -> None:
    settings = kafka_settings.model_copy(update={"home": tmp_path, "topic_prefix": f"pc{uuid.uuid4().hex[:8]}."})
    ensure_topics(settings)
    topic = settings.topic(PROVISIONING)
    producer = make_producer(settings)
    messages = [cmd("a", "suspend", "balance_exhausted"), cmd("a", "suspend", "balance_exhausted"),
                cmd("b", "suspend", "invoice_overdue", "c2"), cmd("c", "reactivate", "balance_exhausted")]  # fmt: skip
    for m in messages:
        producer.produce(topic, encode(m), customer_key(m.tenant, m.customer))
    producer.produce(topic, b'{"not": "a command"}', customer_key("t", "c1"))
    producer.flush(10)
    lines: list[str] = []
    assert main_provisioning(settings, tmp_path / "p.sqlite", once=True, out=lines.append, idle_exit_s=2) == 0
    assert sum("(already applied)" in line for line in lines) == 1
    assert sum(line.startswith("skipped") for line in lines) == 1
    s = ProvisioningState(tmp_path / "p.sqlite")
    assert (s.state("t", "c1"), s.state("t", "c2")) == ("active", "suspended")
    # run again: everything was committed, nothing is read twice
    more: list[str] = []
    assert main_provisioning(settings, tmp_path / "p.sqlite", once=True, out=more.append, idle_exit_s=2) == 0
    assert more == []


@pytest.mark.kafka
def test_the_three_topics_are_created_once_and_balances_is_compacted(kafka_settings) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource

    from meterstream.ingest.topics import ensure_provisioning_topics
    from meterstream.schemas.provisioning import BALANCES, NOTIFICATIONS

    settings = kafka_settings.model_copy(update={"topic_prefix": f"pt{uuid.uuid4().hex[:8]}."})
    names = [settings.topic(n) for n in (PROVISIONING, NOTIFICATIONS, BALANCES)]
    assert sorted(ensure_provisioning_topics(settings)) == sorted(names)
    assert ensure_provisioning_topics(settings) == []
    admin = AdminClient({"bootstrap.servers": settings.bootstrap})
    configs = {res.name: fut.result() for res, fut in admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, n) for n in names]).items()}  # fmt: skip
    assert [configs[n]["cleanup.policy"].value for n in names] == ["delete", "delete", "compact"]
