"""A reference consumer of the `provisioning` topic (docs/provisioning.md): what a provisioning system does with
Meterstream's `suspend` / `reactivate` / `limit` / `disconnect` commands, small enough to copy.

It keeps, per customer, the set of active reasons of each kind (a customer may be suspended for its exhausted
balance and for an overdue invoice at once; a `reactivate` lifts only the reason it names) in a small SQLite
file, together with the ids it has applied. Each message is applied in one SQLite transaction (the id recorded
with its effect, so an id is applied once however often Kafka delivers it), and its Kafka offset is committed
only after that transaction: at least once underneath, exactly once in effect. Commands of one customer share a
partition (the key is the customer), so they arrive in the order they were decided.

The effective state of a customer: `suspended` while any suspend reason is active, else `limited` while any limit
reason is, else `active`. A message that is not a command is logged with the reason and skipped (its offset
committed: it can never become one), never applied.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException

from meterstream.schemas.provisioning import PROVISIONING, ProvisioningCommand, decode_command
from meterstream.schemas.settings import Settings

log = logging.getLogger("meterstream.provisioning")

__all__ = ["Applied", "ProvisioningState", "effective", "main_provisioning"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applied (id TEXT PRIMARY KEY, tenant TEXT, customer TEXT, command TEXT, reason TEXT,
                                    at TEXT);
CREATE TABLE IF NOT EXISTS reasons (tenant TEXT, customer TEXT, kind TEXT, reason TEXT, since TEXT, cause TEXT,
                                    PRIMARY KEY (tenant, customer, kind, reason));
CREATE TABLE IF NOT EXISTS disconnected (tenant TEXT, customer TEXT, session TEXT, at TEXT, cause TEXT,
                                         PRIMARY KEY (tenant, customer, session));
"""


def effective(suspended: set[str], limited: set[str]) -> str:
    return "suspended" if suspended else "limited" if limited else "active"


@dataclass(frozen=True)
class Applied:
    command: ProvisioningCommand
    new: bool  # False: its id was applied before (a redelivery): nothing changed
    state: str  # the customer's effective state after it
    suspended: tuple[str, ...]
    limited: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        """`provisioning consume --json`: the command applied and the customer's state after it, one object."""
        c = self.command
        return {"tenant": c.tenant, "customer": c.customer, "command": c.command, "reason": c.reason, "id": c.id,
                "new": self.new, "state": self.state, "suspended": list(self.suspended),
                "limited": list(self.limited), "cause": c.cause, "figures": c.state, "at": c.at}  # fmt: skip

    def line(self) -> str:
        c = self.command
        reasons = ", ".join([*self.suspended, *(f"limit:{r}" for r in self.limited)]) or "-"
        what = "" if self.new else " (already applied)"
        if c.command == "disconnect":
            what = f" session {c.state.get('session_id')!r}{what}"
        return f"{c.tenant}/{c.customer}: {c.command} {c.reason}{what} -> {self.state} [{reasons}]  ({c.cause})"


class ProvisioningState:
    """The consumer's state in SQLite: applied ids and active reasons per customer."""

    def __init__(self, path: Path | str) -> None:
        self.db = sqlite3.connect(str(path))
        self.db.executescript(_SCHEMA)

    def apply(self, c: ProvisioningCommand) -> Applied:
        """Apply one command once (by id), in one transaction."""
        with self.db:
            cur = self.db.execute("INSERT OR IGNORE INTO applied VALUES (?, ?, ?, ?, ?, ?)",
                                  (c.id, c.tenant, c.customer, c.command, c.reason, c.at))  # fmt: skip
            new = cur.rowcount == 1
            if new:
                if c.command == "disconnect":  # one session, not the customer
                    self.db.execute("INSERT OR IGNORE INTO disconnected VALUES (?, ?, ?, ?, ?)",
                                    (c.tenant, c.customer, str(c.state.get("session_id")), c.at, c.cause))  # fmt: skip
                elif c.command == "reactivate":
                    self.db.execute("DELETE FROM reasons WHERE tenant = ? AND customer = ? AND reason = ?",
                                    (c.tenant, c.customer, c.reason))  # fmt: skip
                else:
                    self.db.execute("INSERT OR IGNORE INTO reasons VALUES (?, ?, ?, ?, ?, ?)",
                                    (c.tenant, c.customer, c.command, c.reason, c.at, c.cause))  # fmt: skip
        suspended, limited = self.reasons(c.tenant, c.customer)
        return Applied(c, new, effective(set(suspended), set(limited)), suspended, limited)

    def reasons(self, tenant: str, customer: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        rows = self.db.execute("SELECT kind, reason FROM reasons WHERE tenant = ? AND customer = ? ORDER BY reason",
                               (tenant, customer)).fetchall()  # fmt: skip
        return (tuple(r for k, r in rows if k == "suspend"), tuple(r for k, r in rows if k == "limit"))

    def disconnected(self, tenant: str, customer: str) -> list[str]:
        """The customer's sessions a `disconnect` cut, in session id order."""
        rows = self.db.execute("SELECT session FROM disconnected WHERE tenant = ? AND customer = ? ORDER BY session",
                               (tenant, customer)).fetchall()  # fmt: skip
        return [r[0] for r in rows]

    def state(self, tenant: str, customer: str) -> str:
        suspended, limited = self.reasons(tenant, customer)
        return effective(set(suspended), set(limited))

    def close(self) -> None:
        self.db.close()


def main_provisioning(settings: Settings, state_path: Path | None = None, *, once: bool = False,
                      group: str | None = None, out: Callable[[str], None] = print,
                      idle_exit_s: float = 5.0, as_json: bool = False) -> int:  # fmt: skip
    """Consume the provisioning topic, apply each command once and print each customer's effective state.

    `once`: stop when no message arrived for `idle_exit_s` (read what is there, then exit); else run until
    interrupted. Returns 0 (1 when the topic cannot be read). `as_json`: JSON lines, one object per command
    applied (`Applied.to_json`), `{"skipped": ..., "reason": ...}` and `{"error": ...}`."""

    def say(text: str, **fields: object) -> None:
        out(json.dumps(fields) if as_json else text)

    topic = settings.topic(PROVISIONING)
    path = state_path or settings.home / "provisioning.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = ProvisioningState(path)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap,
                         "group.id": group or settings.topic("meterstream-provisioning-consumer"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
    idle_since = None  # counted from the group's assignment (joining takes a few seconds)

    def assigned(_consumer: Consumer, _partitions: list) -> None:
        nonlocal idle_since
        idle_since = time.monotonic()

    consumer.subscribe([topic], on_assign=assigned)
    try:
        while True:
            msg = consumer.poll(0.5)
            if msg is None:
                if once and idle_since is not None and time.monotonic() - idle_since > idle_exit_s:
                    return 0
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    say(f"error: {topic}: {err}", error=f"{topic}: {err}")
                    return 1
                log.warning("%s: %s", topic, err)
                continue
            idle_since = time.monotonic()
            try:
                command = decode_command(msg.value())
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                where = f"{topic}[{msg.partition()}]@{msg.offset()}"
                say(f"skipped {where}: not a provisioning command ({exc})", skipped=where,
                    reason=f"not a provisioning command ({exc})")  # fmt: skip
            else:
                applied = state.apply(command)
                out(json.dumps(applied.to_json()) if as_json else applied.line())
            consumer.commit(message=msg, asynchronous=False)  # after the SQLite commit: at least once
    except KeyboardInterrupt:
        return 0
    except KafkaException as exc:
        say(f"error: {topic}: {exc}", error=f"{topic}: {exc}")
        return 1
    finally:
        consumer.close()
        state.close()
