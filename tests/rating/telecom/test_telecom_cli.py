"""``meterstream rate event``: the rated event as JSON (the CLI, deploy/cli.py's typer app, in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from meterstream.deploy.cli import main

EXAMPLE = Path(__file__).resolve().parents[3] / "rating" / "telecom" / "examples" / "telecom_plan.yaml"

# Tue 4 Mar 2025 17:58:30 UTC = 18:58:30 Berlin, national fixed, 150 s, 50 s of bundle left:
# peak [0,90): 50 s free, 40 s * 0.09/60 = 0.06; offpeak [90,150): 60 s * 0.04/60 = 0.04 -> 0.1000
EVENT = {
    "id": "cdr-1",
    "tenant": "telco",
    "customer": "c-42",
    "subject": "+4930111",
    "meter": "voice_seconds",
    "quantity": "150",
    "time": "2025-03-04T17:58:30Z",
    "dimensions": {"destination": "+4930123456"},
}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv) if argv[:2] == ("rate", "event") else ["rate", "event", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rate_event_prints_json(capsys):
    code, out, _ = _run(
        capsys,
        "--catalog", str(EXAMPLE),
        "--event", json.dumps(EVENT),
        "--bundle-used", '{"national_minutes": "17950"}',
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["id"] == "cdr-1"
    assert doc["cost"] == "0.1000" and doc["currency"] == "EUR"
    assert doc["bundle_units_used"] == {"national_minutes": "50"}
    assert [(s["time_band"], s["rate_id"], s["usage"], s["increments"], s["bundle_id"]) for s in doc["segments"]] == [
        ("peak", "RT_NAT_PEAK", "50", 1, "national_minutes"),
        ("peak", "RT_NAT_PEAK", "40", 30, None),
        ("offpeak", "RT_NAT_OFFPEAK", "60", 60, None),
    ]
    assert doc["lines"] == [
        {"line_key": "voice_seconds/national/peak", "amount": "0.0600"},
        {"line_key": "voice_seconds/national/offpeak", "amount": "0.0400"},
    ]


def test_full_catalog_and_plan_choice(tmp_path, capsys):
    section = yaml.safe_load(EXAMPLE.read_text())
    cheap = json.loads(json.dumps(section, default=str))
    cheap["rates"]["RT_NAT_PEAK"]["groups"][0]["price"] = "0.0600"
    catalog = {
        "plans": [
            {"id": "flat", "currency": "EUR", "pricing": {"model": "flat"}},
            {"id": "telco_std", "currency": "EUR", "telecom": json.loads(json.dumps(section, default=str))},
            {"id": "telco_cheap", "currency": "CHF", "telecom": cheap},
        ]
    }
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(catalog))
    event = {**EVENT, "quantity": 60, "time": "2025-03-04T10:00:00Z"}
    # first telecom plan: 60 s * 0.09/60
    code, out, _ = _run(capsys, "rate", "event", "--catalog", str(path), "--event", json.dumps(event),
                        "--bundle-used", '{"national_minutes": 18000}')  # fmt: skip
    assert code == 0 and json.loads(out)["cost"] == "0.0900"
    # --plan picks another one (and its currency)
    code, out, _ = _run(capsys, "--catalog", str(path), "--plan", "telco_cheap", "--event", json.dumps(event),
                        "--bundle-used", '{"national_minutes": 18000}')  # fmt: skip
    doc = json.loads(out)
    assert code == 0 and (doc["cost"], doc["currency"]) == ("0.0600", "CHF")


def test_event_from_file_and_no_rate(tmp_path, capsys):
    # an SMS with no destination and no *any... the example has *any for SMS, so use an unrated meter
    f = tmp_path / "e.json"
    f.write_text(json.dumps({**EVENT, "meter": "api_calls"}))
    code, out, _ = _run(capsys, "--catalog", str(EXAMPLE), "--event", f"@{f}")
    assert code == 1
    assert json.loads(out)["error"] == "meter not rated by plan"


def test_bad_catalog_is_reported(tmp_path, capsys):
    bad = yaml.safe_load(EXAMPLE.read_text())
    bad["rates"]["RT_EU"]["increments"] = "sixty"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(bad, default=str))))
    code, _, err = _run(capsys, "--catalog", str(path), "--event", json.dumps(EVENT))
    assert code == 2 and "telecom.rates.RT_EU.increments" in err


def test_bundle_used_defaults_to_none_used(capsys):
    # without --bundle-used the 300-minute bundle is untouched: all 150 s (90 peak + 60 offpeak) from it, cost 0
    code, out, _ = _run(capsys, "--catalog", str(EXAMPLE), "--event", json.dumps(EVENT))
    doc = json.loads(out)
    assert code == 0
    assert (doc["cost"], doc["bundle_units_used"]) == ("0.0000", {"national_minutes": "150"})
    assert [(s["usage"], s["bundle_id"]) for s in doc["segments"]] == [
        ("90", "national_minutes"),
        ("60", "national_minutes"),
    ]
