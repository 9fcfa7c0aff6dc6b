"""Plan validation (errors name the field), the CSV loader, the JSON Schema and the example plan."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import yaml

from meterstream.rating.telecom import TelecomCatalogError, load_telecom_csv, parse_telecom_plan, rate_cdr

from .plans import section

D = Decimal
ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "rating" / "telecom" / "examples"
SCHEMA = json.loads((ROOT / "schemas" / "telecom_plan.v1.json").read_text())


def _set(doc, path, value):
    *parents, last = path
    for p in parents:
        doc = doc[p]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

INVALID = [
    # (id, path to change, new value, field path in the error, words in the reason)
    (
        "bad_increments",
        ("rates", "R_PEAK", "increments"),
        "60-1",
        "telecom.rates.R_PEAK.increments",
        "first/step",
    ),
    ("zero_step", ("rates", "R_PEAK", "increments"), "60/0", "telecom.rates.R_PEAK.increments", "first/step"),
    (
        "negative_price",
        ("rates", "R_PEAK", "groups", 0, "price"),
        "-0.10",
        "telecom.rates.R_PEAK.groups[0].price",
        "greater than or equal",
    ),
    ("per_zero", ("rates", "R_PEAK", "groups", 0, "per"), 0, "telecom.rates.R_PEAK.groups[0].per", "greater"),
    (
        "groups_not_from_zero",
        ("rates", "R_INTL", "groups", 0, "from"),
        10,
        "telecom.rates.R_INTL.groups",
        "start at 0",
    ),
    (
        "unknown_rate",
        ("meters", "voice_seconds", "rates", 0, "bands", "peak"),
        "R_NOPE",
        "telecom.meters.voice_seconds.rates[0].bands.peak",
        "unknown rate 'R_NOPE'",
    ),
    (
        "missing_band",
        ("meters", "voice_seconds", "rates", 0, "bands", "weekend"),
        _DELETE,
        "telecom.meters.voice_seconds.rates[0].bands",
        "no rate for time band 'weekend'",
    ),
    (
        "unknown_destination",
        ("meters", "voice_seconds", "rates", 1, "destination"),
        "NOWHERE",
        "telecom.meters.voice_seconds.rates[1].destination",
        "unknown destination",
    ),
    ("bad_timezone", ("timezone",), "Mars/Olympus", "telecom.timezone", "unknown IANA time zone"),
    (
        "bad_day",
        ("time_bands", "periods", 0, "days"),
        ["funday"],
        "telecom.time_bands.periods[0].days",
        "unknown day",
    ),
    (
        "bad_time",
        ("time_bands", "periods", 0, "start"),
        "8am",
        "telecom.time_bands.periods[0].start",
        "HH:MM",
    ),
    (
        "overlap",
        ("time_bands", "periods", 1, "days"),
        ["fri", "sat"],
        "telecom.time_bands.periods[1]",
        "overlaps periods[0] on fri",
    ),
    (
        "prefix_not_digits",
        ("destinations", "NAT", "prefixes"),
        ["49x"],
        "telecom.destinations.NAT.prefixes",
        "digits",
    ),
    (
        "data_without_unit",
        ("meters", "data_bytes", "unit"),
        _DELETE,
        "telecom.meters.data_bytes.unit",
        "needs a unit",
    ),
    (
        "bundle_unit_for_other_kind",
        ("bundles", 0, "unit"),
        "MB",
        "telecom.bundles[0].unit",
        "does not measure a voice meter",
    ),
    (
        "bundle_unknown_group",
        ("bundles", 0, "groups"),
        ["nation"],
        "telecom.bundles[0].groups[0]",
        "unknown destination group",
    ),
    ("unknown_field", ("surprise",), 1, "telecom.surprise", "Extra inputs are not permitted"),
    ("bad_rounding", ("rounding", "method"), "bankers", "telecom.rounding.method", "up"),
    (
        "rate_and_bands",
        ("meters", "voice_seconds", "rates", 1, "bands"),
        {"peak": "R_MOB"},
        "telecom.meters.voice_seconds.rates[1]",
        "exactly one of",
    ),
]


@pytest.mark.parametrize(("change", "value", "field", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_sections_name_the_field(change, value, field, reason):
    s = section()
    _set(s, change, value)
    with pytest.raises(TelecomCatalogError) as exc:
        parse_telecom_plan(s, currency="EUR")
    assert any(path == field and reason in why for path, why in exc.value.problems), exc.value.problems
    assert field in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_duplicate_prefix_across_destinations():
    s = section()
    s["destinations"]["INTL"]["prefixes"] = ["44", "4917"]
    with pytest.raises(TelecomCatalogError) as exc:
        parse_telecom_plan(s, currency="EUR")
    assert exc.value.problems[0][0].startswith("telecom.destinations.")
    assert "also in" in exc.value.problems[0][1]


def test_bad_currency():
    with pytest.raises(TelecomCatalogError, match=r"telecom\.currency"):
        parse_telecom_plan(section(), currency="euro")


def test_valid_section_passes_the_schema():
    jsonschema.validate(json.loads(json.dumps(section())), SCHEMA)


def test_example_plan_passes_the_schema():
    doc = yaml.safe_load((EXAMPLES / "telecom_plan.yaml").read_text())
    jsonschema.validate(json.loads(json.dumps(doc, default=str)), SCHEMA)


@pytest.mark.parametrize(
    "case",
    [
        c
        for c in INVALID
        if c[0]
        in {
            "bad_increments",
            "negative_price",
            "bad_day",
            "bad_time",
            "prefix_not_digits",
            "unknown_field",
            "bad_rounding",
            "per_zero",
        }
    ],
    ids=lambda c: c[0],
)
def test_schema_rejects_structural_errors(case):
    s = section()
    _set(s, case[1], case[2])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(s, SCHEMA)


# --- CSV ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def example_yaml():
    return parse_telecom_plan(yaml.safe_load((EXAMPLES / "telecom_plan.yaml").read_text()), currency="EUR")


@pytest.fixture(scope="module")
def example_csv():
    return load_telecom_csv(EXAMPLES / "csv", currency="EUR")


def test_csv_loader_gives_the_same_plan_as_the_yaml(example_yaml, example_csv):
    assert example_csv == example_yaml
    example_yaml.compiled  # noqa: B018 - the compiled cache must not affect equality
    assert example_csv == example_yaml
    assert example_csv != parse_telecom_plan(yaml.safe_load((EXAMPLES / "telecom_plan.yaml").read_text()),
                                             currency="CHF")  # fmt: skip


@pytest.mark.parametrize(
    ("meter", "number", "start", "seconds"),
    [
        ("voice_seconds", "+4930123", datetime(2025, 3, 4, 17, 58, 30, tzinfo=UTC), 150),
        ("voice_seconds", "+8613123", datetime(2025, 3, 4, 17, 58, 30, tzinfo=UTC), 150),
        ("voice_seconds", "+4917612", datetime(2025, 12, 25, 10, tzinfo=UTC), 95),
        ("sms", "+4990012", datetime(2025, 3, 8, 10, tzinfo=UTC), 1),
        ("data_bytes", None, datetime(2025, 3, 4, 10, tzinfo=UTC), 1_500_000),
    ],
)
def test_csv_and_yaml_rate_identically(example_yaml, example_csv, meter, number, start, seconds):
    dims = {"destination": number} if number else {}
    a, b = (
        rate_cdr(p, meter=meter, quantity=D(seconds), start=start, dimensions=dims, bundle_used={})
        for p in (example_yaml, example_csv)
    )
    assert a == b


def test_csv_errors_name_file_line_and_column(tmp_path):
    d = tmp_path / "tp"
    shutil.copytree(EXAMPLES / "csv", d)
    rates = (d / "Rates.csv").read_text().splitlines()
    rates[2] = "RT_NAT_PEAK,0,0.0900,sixty,1s,60s"  # line 3
    (d / "Rates.csv").write_text("\n".join(rates) + "\n")
    with pytest.raises(TelecomCatalogError) as exc:
        load_telecom_csv(d, currency="EUR")
    assert ("Rates.csv:3.RateUnit", "'sixty' is not a number or duration like 60s") in exc.value.problems


def test_csv_missing_file(tmp_path):
    d = tmp_path / "tp"
    shutil.copytree(EXAMPLES / "csv", d)
    (d / "Timings.csv").unlink()
    with pytest.raises(TelecomCatalogError, match=r"Timings\.csv: file missing"):
        load_telecom_csv(d, currency="EUR")


def test_csv_unknown_rate_reference(tmp_path):
    d = tmp_path / "tp"
    shutil.copytree(EXAMPLES / "csv", d)
    text = (d / "DestinationRates.csv").read_text().replace("DR_EU,EU,RT_EU,", "DR_EU,EU,RT_MISSING,")
    (d / "DestinationRates.csv").write_text(text)
    with pytest.raises(TelecomCatalogError) as exc:
        load_telecom_csv(d, currency="EUR")
    assert exc.value.problems[0][0].startswith("DestinationRates.csv:") and "RT_MISSING" in exc.value.problems[0][1]


# --- the example plan, worked by hand ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("meter", "number", "start", "quantity", "used", "cost", "line_key"),
    [
        # Tue 11:00 Berlin, national fixed 61 s, 60/1 at 0.09/min, bundle spent: 61*0.09/60 = 0.0915
        (
            "voice_seconds",
            "+49301234567",
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            61,
            18000,
            "0.0915",
            "voice_seconds/national/peak",
        ),
        # same call inside the 300-minute bundle: free
        (
            "voice_seconds",
            "+49301234567",
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            61,
            0,
            "0.0000",
            "voice_seconds/national/peak",
        ),
        # mobile, Saturday: 0.09/min, 150 s -> 0.225 -> 0.2250
        (
            "voice_seconds",
            "+4917612345678",
            datetime(2025, 3, 8, 10, tzinfo=UTC),
            150,
            18000,
            "0.2250",
            "voice_seconds/mobile/weekend",
        ),
        # Austria (EU) 61 s, 60/60: 0.15 connect + 2 * 0.29 = 0.73
        (
            "voice_seconds",
            "+43123456",
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            61,
            0,
            "0.7300",
            "voice_seconds/international/peak",
        ),
        # China falls to *any (RT_WORLD): 18:58:30 Berlin +150 s: peak [0,90) -> blocks [0,60) 1.49+0.25,
        # [60,120) 0.99; offpeak [90,150) -> block [120,180) 0.99; total 3.72
        (
            "voice_seconds",
            "+8613123",
            datetime(2025, 3, 4, 17, 58, 30, tzinfo=UTC),
            150,
            0,
            "3.7200",
            "voice_seconds/international/peak",
        ),
        # EU call of 1 hour: 0.15 + 60*0.29 = 17.55 -> capped at 10.00
        (
            "voice_seconds",
            "+33123456",
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            3600,
            0,
            "10.0000",
            "voice_seconds/international/peak",
        ),
        # freephone is free and does not touch the bundle
        (
            "voice_seconds",
            "+49800123456",
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            600,
            0,
            "0.0000",
            "voice_seconds/freephone/peak",
        ),
        # SMS to a premium number: 49900 is priced for voice only, so SMS falls through to 49: 0.09
        ("sms", "+4990012345", datetime(2025, 3, 4, 10, tzinfo=UTC), 1, 0, "0.0900", "sms/national/peak"),
        # data 1.5 MB -> 2 MB at 0.02 = 0.04
        (
            "data_bytes",
            None,
            datetime(2025, 3, 4, 10, tzinfo=UTC),
            1_500_000,
            0,
            "0.0400",
            "data_bytes/data/peak",
        ),
    ],
)
def test_example_plan(example_yaml, meter, number, start, quantity, used, cost, line_key):
    dims = {"destination": number} if number else {}
    r = rate_cdr(
        example_yaml,
        meter=meter,
        quantity=D(quantity),
        start=start,
        dimensions=dims,
        bundle_used={"national_minutes": D(used)},
    )
    assert (str(r.cost), r.line_key) == (cost, line_key)
    if number == "+49800123456":
        assert r.bundle_units_used == {}
