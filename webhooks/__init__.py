"""Invoice lifecycle events and signed webhooks (docs/webhooks.md).

`events` appends one event per invoice transition, credit note and payment to `webhook_outbox` in the same
transaction as the change; `dispatcher` fans each event out to the tenant's endpoints (`endpoints`) as a
Standard Webhooks POST (`signing`), with retries on the `backoff` schedule and a dead letter after the last
try (`deliveries`: list, replay), and produces it to the `invoice-events` Kafka topic (`topic`).
"""
