"""The rated-usage record the schemas.rated tests start from (test_rated_arrow.py, test_rated_split.py): every
field of the message, with values at the edges of their columns (a quantity with 12 decimals after 1234, an
amount with 18, a cumulative of 14 integer digits, a src_offset over 2**26)."""

RECORD = {
    "tenant": "cloudco", "id": "evt-1", "customer": "org-7", "subject": "", "meter": "api_calls",
    "time": "2026-10-12T10:11:12.345Z", "period": "2026-10", "quantity": "1234.000000000001",
    "amount": "0.024680000000000020", "cumulative": "99999999999999.5", "currency": "USD", "plan": "cloud-standard",
    "line": "api_calls", "dimensions": {"region": "eu-west-1", "az": "b"}, "source": "gw-1", "src_partition": 3,
    "src_offset": 123456789,
}  # fmt: skip
