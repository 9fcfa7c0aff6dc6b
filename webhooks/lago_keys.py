"""Each tenant's keys for Lago-format webhooks (webhooks/lago_signing.py), in the entity store: made the first time
they are needed (a Lago endpoint created, the public key asked for), then never changed.

`meterstream webhooks lago-keys --tenant T` prints the HMAC key (Lago shows it in its UI) and the public key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from meterstream.entities.db import Base
from meterstream.webhooks.lago_signing import LagoKeys, new_keys


class LagoWebhookKeysRow(Base):
    __tablename__ = "lago_webhook_keys"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    hmac_key: Mapped[str] = mapped_column(String(128))
    private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def stored_keys(sf: sessionmaker, tenant: str) -> LagoKeys | None:
    """The tenant's keys if made (None: never needed yet); never makes them (for callers without a credential)."""
    with sf() as s:
        row = s.get(LagoWebhookKeysRow, tenant)
        return None if row is None else LagoKeys(row.hmac_key, row.private_pem)


def keys_for(sf: sessionmaker, tenant: str) -> LagoKeys:
    """The tenant's keys, made and stored on first use (two writers racing: the first one stored wins)."""
    stored = stored_keys(sf, tenant)
    if stored is not None:
        return stored
    fresh = new_keys()
    try:
        with sf.begin() as s:
            s.add(LagoWebhookKeysRow(tenant=tenant, hmac_key=fresh.hmac_key, private_pem=fresh.private_pem,
                                     created_at=datetime.now(UTC)))  # fmt: skip
        return fresh
    except IntegrityError:  # another writer stored the tenant's keys meanwhile: those are the keys
        with sf() as s:
            row = s.scalar(select(LagoWebhookKeysRow).where(LagoWebhookKeysRow.tenant == tenant))
            assert row is not None
            return LagoKeys(row.hmac_key, row.private_pem)


__all__ = ["LagoWebhookKeysRow", "keys_for", "stored_keys"]
