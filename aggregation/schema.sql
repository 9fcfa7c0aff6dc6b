-- Meterstream tables and views. Run by `meterstream init` (idempotent: IF NOT EXISTS everywhere).
-- Same DDL on embedded chdb and on a ClickHouse server.

CREATE DATABASE IF NOT EXISTS {db};

-- Source of truth: one row per deduplicated, rated event. Identity (tenant, event_id) is the sort key,
-- so a replayed row (same identity, byte-identical content) collapses on merge; exact reads use FINAL.
-- The sink inserts the topic's JSON records as they are (JSONEachRow, parsed by ClickHouse): `id` is the
-- record's name for the event id, an EPHEMERAL input column that only feeds `event_id`.
CREATE TABLE IF NOT EXISTS {db}.rated_usage
(
    tenant        LowCardinality(String),
    id            String EPHEMERAL,
    event_id      String DEFAULT id,
    customer      String,
    subject       String,
    meter         LowCardinality(String),
    time          DateTime64(3, 'UTC'),
    period        LowCardinality(String),
    quantity      Decimal(38, 12),
    amount        Decimal(38, 18),
    cumulative    Decimal(38, 12),
    currency      LowCardinality(String),
    plan          LowCardinality(String),
    line          LowCardinality(String),
    dimensions    Map(LowCardinality(String), String),
    source        LowCardinality(String),
    src_partition UInt16,
    src_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, event_id)
SETTINGS non_replicated_deduplication_window = 1000, merge_selector_base = 10;
-- merge_selector_base = 10 (ClickHouse's default is 5): the sink inserts a part every sink_batch_seconds, and
-- merging those small parts was most of the sink's CPU (bench/sink_cpu.py: each row rewritten 4.6 times by
-- merges at 3,000 rows/s with the default, 2.35 with 10). A merge now waits for about twice as many parts, so
-- a partition holds more of them between merges (ClickHouse still lowers the base as parts age and as a
-- partition passes 10 parts, and the parts_to_delay/throw_insert limits are untouched). Reads are unchanged:
-- FINAL collapses a replayed row across parts as a merge would, and every billing read and view uses it.

-- Quantities are never negative (amounts may be: a volume-priced event can lower the period's charge).
-- An insert with a negative one is refused; the sink dead-letters that record (stage 'sink').
ALTER TABLE {db}.rated_usage ADD CONSTRAINT IF NOT EXISTS quantity_not_negative CHECK quantity >= 0;
ALTER TABLE {db}.rated_usage ADD CONSTRAINT IF NOT EXISTS cumulative_not_negative CHECK cumulative >= 0;

-- Dead letters, for analysts and `meterstream dlq`: what was refused, where it sits in Kafka, and why.
-- Stage 'parse' / 'rate': the processor's (topic = the usage topic). Stage 'sink': a record ClickHouse
-- refused (topic = rated-usage or dead-letters, `record` = its line in a packed rated-usage message,
-- reason = ClickHouse's error); these are in this table only, not in the dead-letters topic.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    topic      LowCardinality(String),
    partition  UInt16,
    offset     UInt64,
    record     UInt32,
    stage      LowCardinality(String),
    field      String,
    reason     String,
    tenant     String,
    event_id   String,
    key        Nullable(String) EPHEMERAL,
    kafka_key  String DEFAULT ifNull(key, ''),
    raw        String
)
ENGINE = ReplacingMergeTree
ORDER BY (topic, partition, offset, record)
SETTINGS non_replicated_deduplication_window = 1000;

-- Invoices written by period close; re-running a close replaces the same (tenant, customer, period).
CREATE TABLE IF NOT EXISTS {db}.invoices
(
    tenant       LowCardinality(String),
    customer     String,
    period       LowCardinality(String),
    invoice_id   String,
    plan         LowCardinality(String),
    currency     LowCardinality(String),
    subtotal     Decimal(38, 6),
    total        Decimal(38, 6),
    line_count   UInt32,
    document     String,
    closed_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(closed_at)
ORDER BY (tenant, customer, period);

CREATE TABLE IF NOT EXISTS {db}.invoice_lines
(
    tenant       LowCardinality(String),
    customer     String,
    period       LowCardinality(String),
    line_no      UInt32,
    meter        LowCardinality(String),
    description  String,
    quantity     Decimal(38, 12),
    amount       Decimal(38, 6),
    currency     LowCardinality(String),
    closed_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(closed_at)
ORDER BY (tenant, customer, period, line_no);

-- Lines carry what they charge for: `applies_to` is the period of the usage (an adjustment line on a
-- later invoice charges late usage of an earlier, closed period), `line_key` the meter or telecom line.
ALTER TABLE {db}.invoice_lines ADD COLUMN IF NOT EXISTS line_key String DEFAULT meter;
ALTER TABLE {db}.invoice_lines ADD COLUMN IF NOT EXISTS applies_to LowCardinality(String) DEFAULT period;
ALTER TABLE {db}.invoice_lines ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'usage';
-- What the stream rated for a usage line (rated_usage.amount's scale), beside the amount invoiced: usage and
-- invoices reconcile line by line; NULL on fees, adjustments and lines stored before the column existed.
ALTER TABLE {db}.invoice_lines ADD COLUMN IF NOT EXISTS streamed_amount Nullable(Decimal(38, 18));

-- Closed periods: their invoices are final; usage arriving later is billed as adjustments.
CREATE TABLE IF NOT EXISTS {db}.period_closes
(
    period     LowCardinality(String),
    closed_at  DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(closed_at)
ORDER BY period;

-- Analyst rollups: views over the deduplicated table, so they are exact by construction
-- (a materialized rollup would count a replayed row twice; see README "Analysts").
CREATE VIEW IF NOT EXISTS {db}.usage_hourly AS
SELECT tenant, customer, subject, meter, currency, toStartOfHour(time) AS hour,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
FROM {db}.rated_usage FINAL
GROUP BY tenant, customer, subject, meter, currency, hour;

CREATE VIEW IF NOT EXISTS {db}.usage_daily AS
SELECT tenant, customer, subject, meter, currency, toDate(time) AS day,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS amount
FROM {db}.rated_usage FINAL
GROUP BY tenant, customer, subject, meter, currency, day;

CREATE VIEW IF NOT EXISTS {db}.usage_by_period AS
SELECT tenant, customer, meter, plan, currency, period,
       count() AS events, sum(quantity) AS quantity, sum(amount) AS streamed_amount
FROM {db}.rated_usage FINAL
GROUP BY tenant, customer, meter, plan, currency, period;
