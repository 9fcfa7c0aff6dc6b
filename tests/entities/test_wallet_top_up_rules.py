"""Automatic top-up rules of wallets in the store (entities/wallets.py, migration 0012), on SQLite and PostgreSQL:
kept with the wallet and published in its document for the processor, refused naming the field, replaced by an
update (a rule named by its id keeps it), and migration 0012 down and up again."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import inspect

from meterstream.entities.common import Invalid
from meterstream.entities.customers import put_customer
from meterstream.entities.wallets import WalletRow, WalletSpec, create_wallet, get_wallet, update_wallet, wallet_doc
from meterstream.schemas.entities import CustomerDoc

T = "acme"
RULE = {"trigger": "threshold", "method": "fixed", "threshold_credits": "10", "paid_credits": "50",
        "granted_credits": "5.5", "started_at": "2026-12-01T00:00:00Z"}  # fmt: skip


def customer(sf) -> None:  # type: ignore[no-untyped-def]
    put_customer(sf, CustomerDoc(tenant=T, external_id="c1", name="c1", version=0, currency="EUR"))


def test_a_rule_is_kept_and_published_with_the_wallet(sf) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    made, _ = create_wallet(sf, WalletSpec(T, "c1", rate_amount=Decimal("0.5"), rules=[RULE]))
    (rule,) = get_wallet(sf, T, made.id).rules
    assert (rule.threshold_credits, rule.paid_credits, rule.granted_credits) == (Decimal(10), Decimal(50),
                                                                                Decimal("5.5"))  # fmt: skip
    assert rule.started_at is not None and rule.started_at.isoformat() == "2026-12-01T00:00:00+00:00"
    with sf() as s:
        doc = wallet_doc(s, s.query(WalletRow).filter_by(wallet_id=made.id).one())
    assert [(r.id, r.threshold_credits, r.paid_credits) for r in doc.top_up_rules] == [(rule.id, 10, 50)]

    same = update_wallet(sf, T, made.id, rules=[{**RULE, "id": rule.id, "paid_credits": "60"}])
    assert [(r.id, r.paid_credits, r.created_at) for r in same.rules] == [(rule.id, 60, rule.created_at)]
    other = update_wallet(sf, T, made.id, rules=[{**RULE, "id": "not-a-rule-of-this-wallet"}])
    assert other.rules[0].id != rule.id  # an unknown id: a new rule
    assert update_wallet(sf, T, made.id, name="renamed").rules == other.rules  # left out: kept
    assert update_wallet(sf, T, made.id, rules=[]).rules == ()


@pytest.mark.parametrize(("rule", "field", "words"), [
    ({**RULE, "trigger": "interval", "interval": "monthly"}, "recurring_transaction_rules[0].threshold_credits",
     "only for trigger `threshold`"),
    ({**RULE, "trigger": "interval", "interval": "daily", "threshold_credits": None},
     "recurring_transaction_rules[0].interval", "one of weekly, monthly, quarterly, semiannual, yearly"),
    ({**RULE, "interval": "monthly"}, "recurring_transaction_rules[0].interval", "only for trigger `interval`"),
    ({**RULE, "trigger": "sometimes"}, "recurring_transaction_rules[0].trigger", "`threshold` or `interval`"),
    ({**RULE, "method": "target"}, "recurring_transaction_rules[0].method", "fixed"),
    ({k: v for k, v in RULE.items() if k != "threshold_credits"}, "recurring_transaction_rules[0].threshold_credits",
     "required"),
    ({**RULE, "threshold_credits": "-1"}, "recurring_transaction_rules[0].threshold_credits", "0 or more"),
    ({**RULE, "threshold_credits": 1.5}, "recurring_transaction_rules[0].threshold_credits", "decimal string"),
    ({**RULE, "paid_credits": "abc"}, "recurring_transaction_rules[0].paid_credits", "not a decimal"),
    ({**RULE, "paid_credits": "0", "granted_credits": None}, "recurring_transaction_rules[0].paid_credits",
     "paid_credits or granted_credits"),
    ({**RULE, "granted_credits": "0.001"}, "recurring_transaction_rules[0].granted_credits", "minor units"),
    ({**RULE, "expiration_at": "2026-11-01T00:00:00Z"}, "recurring_transaction_rules[0].expiration_at", "after"),
    ({**RULE, "started_at": "2026-12-01T00:00:00"}, "recurring_transaction_rules[0].started_at", "UTC offset"),
    ({**RULE, "threshold": "10"}, "recurring_transaction_rules[0].threshold", "not a field"),
])  # fmt: skip
def test_bad_rules_are_refused_naming_the_field(sf, rule, field, words) -> None:  # type: ignore[no-untyped-def]
    customer(sf)
    with pytest.raises(Invalid) as err:
        create_wallet(sf, WalletSpec(T, "c1", rules=[rule]))
    assert err.value.field == field and words in str(err.value)
    with pytest.raises(Invalid, match="at most 1 rule"):
        create_wallet(sf, WalletSpec(T, "c1", rules=[RULE, RULE]))
    with sf() as s:
        assert s.query(WalletRow).count() == 0  # nothing written


def test_migration_0012_down_and_up(fresh_url: str) -> None:
    from alembic import command

    from meterstream.entities.db import alembic_config, make_engine, migrate, session_factory

    engine = make_engine(url=fresh_url)
    migrate(engine=engine)
    sf = session_factory(engine)
    customer(sf)
    made, _ = create_wallet(sf, WalletSpec(T, "c1", rules=[RULE]))
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011")
    assert "recurring_rules" not in {c["name"] for c in inspect(engine).get_columns("wallets")}
    migrate(engine=engine)
    assert get_wallet(sf, T, made.id).rules == ()  # the wallet stays, without its rule
    engine.dispose()
