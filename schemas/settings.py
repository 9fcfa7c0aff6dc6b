"""The one settings object: every knob is a `METERSTREAM_*` environment variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from meterstream.schemas.event import DEFAULT_MAX_AGE_DAYS, DEFAULT_MAX_FUTURE_MINUTES

_DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "deploy" / "demo_catalog.yaml"


class Settings(BaseSettings):
    """Configuration shared by every process; read once from the environment."""

    model_config = SettingsConfigDict(env_prefix="METERSTREAM_", extra="ignore")

    home: Path = Field(Path(".meterstream"), description="Data directory: Kafka logs, chdb store, state.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "meterstream",
        description="Download cache reused across runs (Kafka broker jars).",
    )
    kafka_bootstrap: str | None = Field(None, description="An existing broker; when set, no local broker is started.")
    kafka_port: int = Field(9092, ge=1, le=65534, description="Port of the local broker (its controller: port + 1).")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version fetched from Maven Central.")
    kafka_heap: str = Field("1g", description="Local broker JVM heap (-Xmx).")
    kafka_brokers: int = Field(
        1,
        ge=1,
        le=9,
        description="Nodes of the local KRaft cluster (`kafka start --brokers N`): node i listens on "
        "kafka_port + 2(i-1), its controller on the port after; 3 gives replication factor 3, min.insync.replicas 2.",
    )
    topic_prefix: str = Field("", description="Prefix for every topic name (several pipelines, one broker).")
    partitions: int = Field(4, ge=1, description="Partitions of the usage and rated topics.")
    clickhouse_url: str | None = Field(
        None, description="http://host:8123 for a server; default chdb://<home>/clickhouse (embedded)."
    )
    clickhouse_database: str = Field("meterstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Database.")
    clickhouse_cluster: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="A ClickHouse server cluster (remote_servers) name: replicated tables ON CLUSTER plus Distributed"
        " tables (aggregation/cluster_ddl.py); unset: single-node tables.",
    )
    clickhouse_http_port: int = Field(
        8123, ge=0, le=65535,
        description="Embedded store: the sink serves ClickHouse's HTTP interface here (read-only; 0 = off).",
    )  # fmt: skip
    clickhouse_http_host: str = Field("127.0.0.1", description="Address of that ClickHouse HTTP front.")
    clickhouse_http_password: str | None = Field(
        None,
        description="Password of user `meterstream`, the front's internal user (reads every tenant, the only one that"
        " may write; `meterstream query`, the API, the close); unset: a secret the sink generates and keeps in"
        " <home>/clickhouse-writer.secret (owner-only).",
    )
    catalog: Path = Field(_DEFAULT_CATALOG, description="Plans and customer assignments (YAML or JSON).")
    processor_engine: Literal["native", "legacy", "faust"] = Field(
        "native",
        description="native: confluent-kafka + RocksDB, columnar batches; legacy: the same, one message at a"
        " time (step.process; kept to measure against); faust: faust-streaming agent.",
    )
    dedup_window_days: int = Field(35, ge=1, description="How long an event id is remembered.")
    event_max_age_days: float = Field(
        DEFAULT_MAX_AGE_DAYS,
        gt=0,
        description="Events whose time is more than this before their Kafka timestamp are dead-lettered. 92 days:"
        " any event of the two previous calendar months is accepted until the end of the current one (late"
        " usage for a closed period becomes an adjustment).",
    )
    unmatched_retention_days: int = Field(
        365,
        ge=0,
        description="The daily billing run deletes external events that matched no meter (unmatched_events) and"
        " Lago event errors (lago_event_errors, with the raw events GET /events/{transaction_id} reads) received"
        " more than this many days ago; 0 keeps them for ever. The default is well past the time window in which"
        " such an event could still be replayed and metered (METERSTREAM_EVENT_MAX_AGE_DAYS).",
    )
    event_max_future_minutes: float = Field(
        DEFAULT_MAX_FUTURE_MINUTES,
        ge=0,
        description="Events whose time is more than this after their Kafka timestamp are dead-lettered (a producer"
        " clock or time zone error; an hour leaves room for clock drift).",
    )
    # HTTP API (issue #13): `meterstream serve`
    database_url: str | None = Field(
        None, description="SQL store of API keys and entities; default sqlite:///<home>/meterstream.db."
    )
    api_host: str = Field("127.0.0.1", description="Address `meterstream serve` listens on (0.0.0.0 in containers).")
    api_port: int = Field(8080, ge=1, le=65535, description="Port of the HTTP API.")
    api_max_events: int = Field(10_000, ge=1_000, description="Most events one POST /v1/events may carry.")
    api_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body the API reads (413 above it)."
    )
    api_rate_limit_per_s: float = Field(
        500.0, ge=0, description="Requests per second per API key (token bucket, in memory); 0 = no limit."
    )
    api_rate_limit_burst: int = Field(1_000, ge=1, description="Token bucket size: requests a key may burst.")
    api_produce_timeout_s: float = Field(
        10.0, gt=0, description="How long an ingest request waits for Kafka's acknowledgement (then 503)."
    )
    api_recent_ids: int = Field(
        200_000, ge=0, description="Event ids the API remembers (per process, ~150 B each) to answer `duplicate`."
    )
    ops_host: str = Field("127.0.0.1", description="Address of /metrics and /healthz (0.0.0.0 in containers).")
    processor_metrics_port: int = Field(9464, ge=1, le=65535, description="Stream processor /metrics and /healthz.")
    sink_metrics_port: int = Field(9465, ge=1, le=65535, description="ClickHouse sink /metrics and /healthz.")
    sink_batch_rows: int = Field(50_000, ge=1, description="Sink flushes after this many rows...")
    sink_fault_file: Path | None = Field(
        None, description="Fault injection: while this file exists, the sink's ClickHouse inserts fail."
    )
    sink_batch_seconds: float = Field(0.3, gt=0, description="...or after this many seconds (bounds latency).")
    sink_dead_letter_seconds: float = Field(
        2.0,
        gt=0,
        description="While rated usage keeps coming, dead letters are inserted after this many seconds (or "
        "sink_batch_rows); when the stream pauses, after sink_batch_seconds.",
    )
    sink_backlog_rows: int = Field(
        300_000,
        ge=0,
        description="While at least this many events wait for the processor (its group's lag on the usage topic) "
        "or rows for the sink (its own lag), the sink inserts larger, fewer blocks (sink_backlog_batch_rows / "
        "sink_backlog_batch_seconds): fewer parts for ClickHouse to merge. 0: never.",
    )
    sink_backlog_batch_rows: int = Field(200_000, ge=1, description="Sink flushes after this many rows in a backlog...")
    sink_backlog_batch_seconds: float = Field(
        2.0, gt=0, description="...or after this many seconds (a backlog's events are older than that already)."
    )
    stall_seconds: float = Field(
        30.0, gt=0, description="/healthz answers 503 when work waits (lag > 0) and nothing moved for this long."
    )
    watchdog_seconds: float = Field(
        120.0,
        ge=0,
        description="A processor or sink stalled this long while Kafka answers exits (status 75) to be "
        "restarted by its supervisor (0: never).",
    )
    # --- the issuer of invoices (the seller printed on every invoice; docs/billing.md "Issuer and taxes") ---
    issuer_name: str = Field("Meterstream Demo GmbH", min_length=1, description="Issuer's legal name on invoices.")
    issuer_address_line1: str | None = Field("Musterstrasse 1", description="Issuer's street address.")
    issuer_address_line2: str | None = Field(None, description="Issuer's second address line.")
    issuer_city: str | None = Field("Berlin", description="Issuer's city.")
    issuer_postal_code: str | None = Field("10115", description="Issuer's postal code.")
    issuer_state: str | None = Field(None, description="Issuer's state or region (ISO 3166-2 part, e.g. CA).")
    issuer_country: str = Field(
        "DE", pattern=r"^[A-Z]{2}$", description="Issuer's country (ISO 3166-1 alpha-2): decides VAT with the buyer's."
    )
    issuer_tax_id: str | None = Field("DE136695976", description="Issuer's tax id (EU VAT number), printed.")
    issuer_email: str | None = Field("billing@example.com", description="Issuer's billing contact, printed.")
    issuer_prefix: str = Field(
        "DEMO", pattern=r"^[A-Za-z0-9]{1,32}$", description="Invoice number prefix: DEMO-2026-000001."
    )
    issuer_vat_registered: bool = Field(True, description="False: no VAT is charged to EU buyers (with a mention).")
    tax_table_file: Path | None = Field(
        None,
        description="YAML tax table (billing/taxes.py TaxTable.from_config: rates by jurisdiction and tax code);"
        " default: the 27 EU standard VAT rates, no sales tax.",
    )

    # --- billing runs and the operator's close (deploy/billing_run.py, api/routes/billing.py) ---
    billing_schedule: str = Field("daily@02:00", description="`daily@HH:MM` (UTC) or `off`: billing runs in `up`.")
    billing_wait_seconds: float = Field(
        600.0, ge=0, description="How long a billing run waits for the pipeline to process its backlog."
    )
    draft_refresh_seconds: float = Field(
        60.0, ge=0, description="`up` brings the open periods' draft invoices up to date this often (0: never)."
    )
    invoices_dir: Path = Field(Path("meterstream-out/invoices"), description="Where billing runs write invoices.")
    operator_tenant: str | None = Field(
        None, description="The tenant whose admin keys may close a period through the API (unset: nobody)."
    )
    billing_close_timeout_seconds: float = Field(
        3600.0, gt=0, description="The API's close (POST /v1/billing/close) gives up after this many seconds."
    )

    @property
    def bootstrap(self) -> str:
        """The broker every client talks to: the named one, or the local one."""
        if self.kafka_bootstrap:
            return self.kafka_bootstrap
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.kafka_brokers))

    @property
    def clickhouse_dsn(self) -> str:
        return self.clickhouse_url or f"chdb://{self.home.resolve() / 'clickhouse'}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings a child process started with `env` will read (for orchestrators such as the demo)."""
    prefix = "METERSTREAM_"
    return Settings(**{k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)})
