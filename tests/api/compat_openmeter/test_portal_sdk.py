"""OpenMeter's portal tokens through the OpenMeter SDK (openmeter==1.0.0b236), unchanged: an admin key creates a
token for one subject; a client holding only that token reads that subject's usage of the allowed meters, nothing
else, until the token is invalidated."""

from __future__ import annotations

import datetime as dt

import openmeter
import pytest
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
from om_rows import put_rows

pytestmark = pytest.mark.kafka


def test_a_portal_token_reads_its_subjects_usage_only(om):
    admin = om["admin"]
    admin.meters.create({"slug": "tokens", "eventType": "prompt", "aggregation": "SUM", "valueProperty": "$.tokens",
                         "groupBy": {"model": "$.model"}})  # fmt: skip
    admin.meters.create({"slug": "prompts", "eventType": "prompt", "aggregation": "COUNT"})
    put_rows(om, [
        {"id": "r1", "meter": "tokens", "customer": "u1", "subject": "u1", "quantity": "10",
         "time": "2026-11-02T10:05:00.000Z", "dimensions": {"model": "a"}},
        {"id": "r2", "meter": "tokens", "customer": "u1", "subject": "u1", "quantity": "4",
         "time": "2026-11-02T11:05:00.000Z", "dimensions": {"model": "b"}},
        {"id": "r3", "meter": "tokens", "customer": "u2", "subject": "u2", "quantity": "1000",
         "time": "2026-11-02T10:30:00.000Z", "dimensions": {"model": "a"}},
    ])  # fmt: skip
    created = admin.portal.portal_tokens.create({"subject": "u1", "allowedMeterSlugs": ["tokens"]})
    assert (created.subject, created.allowed_meter_slugs, created.expired) == ("u1", ["tokens"], False)
    assert created.token.startswith("omp_")
    with openmeter.Client(endpoint=f"{om['base']}/compat/openmeter", token=created.token) as portal:
        r = portal.portal.portal_meters.query_json("tokens")
        assert [(row.subject, row.value) for row in r.data] == [("u1", 14)]  # 10 + 4; u2's 1000 is not visible
        r = portal.portal.portal_meters.query_json("tokens", group_by=["model"])
        assert sorted((row.group_by["model"], row.value) for row in r.data) == [("a", 10), ("b", 4)]
        with pytest.raises(HttpResponseError) as err:  # a meter the token does not allow
            portal.portal.portal_meters.query_json("prompts")
        assert err.value.status_code == 403
        with pytest.raises(HttpResponseError) as err:  # a portal token is no API key
            portal.meters.list()
        assert err.value.status_code == 401
        listed = admin.portal.portal_tokens.list()
        assert [(t.id, t.subject, t.token) for t in listed] == [(created.id, "u1", None)]  # the token is shown once
        assert listed[0].expires_at - listed[0].created_at == dt.timedelta(hours=24)
        admin.portal.portal_tokens.invalidate({"subject": "u1"})
        with pytest.raises(ClientAuthenticationError):
            portal.portal.portal_meters.query_json("tokens")
    assert admin.portal.portal_tokens.list()[0].expired is True
