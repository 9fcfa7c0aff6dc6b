"""The columnar path's decoder (processor/decode.py: msgspec into a typed struct, then memoised checks)
against the specification `parse_event` (orjson + pydantic) on hostile JSON: whatever the decoder
takes must be accepted by `parse_event` as the same event, field by field; everything else is left
to the specification (None). Hand cases pin the JSON corners where two decoders could disagree
(duplicate keys, escapes, surrogates, byte order marks, trailing bytes, big integers) and the time
checks the decoder does with memos instead of parsing (leap days, hour 24, second 60, year range).
"""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterstream.processor.decode import Decoder, Fast
from meterstream.schemas.event import InvalidEvent, TimeWindow, parse_event

NOW_MS = 1_793_620_800_000  # 2026-11-02T12:00:00.000Z
WINDOW = TimeWindow.of(92, 60)  # accepted: 2026-08-02T12:00:00.000Z .. 2026-11-02T13:00:00.000Z

BASE = {
    "id": '"e1"',
    "tenant": '"cloud"',
    "customer": '"c1"',
    "meter": '"api_calls"',
    "quantity": '"12.50"',
    "time": '"2026-11-01T10:00:00.000Z"',
}
# JSON texts per field: valid, invalid, and the encodings two decoders might read differently
TEXTS = {
    "id": ['"e1"', '"e\\u00e9"', '"\\ud83d\\ude00"', '"\\ud800"', '"a\\u0000"', '""', '"' + "x" * 65 + '"', "1"],
    "tenant": ['"cloud"', '"cl/oud"', '"cl\\toud"', '"\\u00e9t"', '""', "[]"],
    "customer": ['"c1"', '"c\\"1"', '"c\\\\1"', '""', "true"],
    "meter": ['"api_calls"', '"Api"', '"a-b.c_d"', '"1a"', '"api_calls\\n"', "{}"],
    "quantity": [
        '"12.50"',
        '"0"',
        '"007"',
        '"1e3"',
        '"-1"',
        '" 1"',
        '"1.0000000000001"',
        '"' + "9" * 19 + '"',
        "0",
        "-0",
        "7",
        "-1",
        "1.0",
        "1e3",
        "9007199254740991",
        "9007199254740992",
        "99999999999999999999",
        "18446744073709551616",
        "true",
        "null",
    ],
    "time": [
        '"2026-11-01T10:00:00.000Z"',
        '"2026-11-01T10:00:00Z"',
        '"2026-11-01t10:00:00.000z"',
        '"2026-11-01T10:00:00.000+00:00"',
        '"2026-02-29T10:00:00.000Z"',
        '"2024-02-29T10:00:00.000Z"',
        '"2026-11-01T24:00:00.000Z"',
        '"2026-11-01T23:59:60.000Z"',
        '"2026-11-02T13:00:00.001Z"',
        '"2026-08-02T11:59:59.999Z"',
        '"2026-08-02T12:00:00.000Z"',
        '"2026-11-01 10:00:00.000Z"',
        '"2026-W44-7T10:00:00.000Z"',
        '"2026-11-01T10:00:00,000Z"',
        '"2026-11-01T10:00:00.\\u0660\\u0660\\u0660Z"',
        "1793613600000",
    ],
    "subject": ['"s1"', '""', "null", "1", '"' + "y" * 100 + '"'],
    "source": ['"gw"', "null", "[]"],
    "dimensions": [
        "{}",
        "null",
        '{"region":"eu"}',
        '{"region":"eu","region":"us"}',
        '{"":"x"}',
        '{"a\\tb":"x"}',
        '{"k":1}',
        '{"k":null}',
        "[]",
        '{"r\\u00e9gion":"\\u00e9"}',
        '{"k":"' + "\\u00e9" * 300 + '"}',
    ],
    "extra": ["1", "null"],
}
WHITESPACE = st.sampled_from(["", " ", "\n", "\t", "\r\n "])


@st.composite
def document(draw: st.DrawFn) -> bytes:
    fields = dict(BASE)
    for name in draw(st.sets(st.sampled_from(sorted(TEXTS)), max_size=3)):
        fields[name] = draw(st.sampled_from(TEXTS[name]))
    for name in draw(st.sets(st.sampled_from(sorted(BASE)), max_size=1)):
        del fields[name]  # a required field missing
    pairs = list(fields.items())
    if draw(st.booleans()):  # a duplicate key: the last one wins in orjson (and must in the decoder)
        name = draw(st.sampled_from(sorted(TEXTS)))
        pairs.insert(draw(st.integers(0, len(pairs))), (name, draw(st.sampled_from(TEXTS[name]))))
    pairs = draw(st.permutations(pairs))
    ws = draw(WHITESPACE)
    body = "{" + ",".join(f'{ws}"{k}"{ws}:{ws}{v}{ws}' for k, v in pairs) + "}"
    raw = (draw(WHITESPACE) + body + draw(WHITESPACE)).encode()
    damaged = [b"\xef\xbb\xbf" + raw, raw + b"x", raw + b"\x00", raw[:-1], b"[" + raw + b"]"]
    return draw(st.sampled_from([raw] * 6 + damaged))


def assert_same_event(fast: Fast, raw: bytes, received_ms: int = NOW_MS) -> None:
    model = parse_event(raw, received_ms, WINDOW)
    assert (fast.id, fast.tenant, fast.customer, fast.subject, fast.meter) == (
        model.id, model.tenant, model.customer, model.subject, model.meter
    )  # fmt: skip
    assert fast.quantity == model.quantity and fast.quantity_text == format(model.quantity, "f")
    assert fast.time_text == model.time_text and fast.time == model.time
    assert fast.dimensions == model.dimensions and fast.source == model.source


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document())
def test_what_the_decoder_takes_parse_event_accepts_as_the_same_event(raw: bytes) -> None:
    fast = Decoder(WINDOW).one(raw, NOW_MS)
    if fast is not None:
        assert_same_event(fast, raw)


def test_the_plain_event_is_taken_with_its_exact_values() -> None:
    raw = (
        b'{"id":"e1","tenant":"cloud","customer":"c1","meter":"api_calls","quantity":"12.50",'
        b'"time":"2026-11-01T10:00:00.000Z","dimensions":{"region":"eu"},"subject":"s1","source":"gw"}'
    )
    fast = Decoder(WINDOW).one(raw, NOW_MS)
    assert fast == Fast("e1", "cloud", "c1", "s1", "api_calls", Decimal("12.50"), "12.50",
                        "2026-11-01T10:00:00.000Z", {"region": "eu"}, "gw")  # fmt: skip
    assert_same_event(fast, raw)
    # JSON integer quantity; key order and whitespace do not matter; absent optional fields
    fast = Decoder(WINDOW).one(b' {"time":"2026-11-01T10:00:00.000Z", "quantity": 7, "meter":"m", "customer":"c",'
                               b' "tenant":"t", "id":"x"}\n', NOW_MS)  # fmt: skip
    assert fast is not None
    assert (fast.quantity_text, fast.dimensions, fast.subject, fast.source) == ("7", {}, None, None)


def event(**texts: str) -> bytes:
    fields = {**BASE, **texts}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


@pytest.mark.parametrize(
    ("raw", "taken"),
    [
        (event(), True),
        (event()[:-1] + b',"id":"e2"}', True),  # duplicate key: the last value, as orjson reads it
        (event(id='"\\ud83d\\ude00"'), True),  # an escaped surrogate pair is one character
        (event(id='"\\ud800"'), False),  # a lone surrogate: refused by both decoders
        (event().replace(b'"e1"', b'"e\xff"'), False),  # not UTF-8
        (b"\xef\xbb\xbf" + event(), False),  # byte order mark
        (event() + b" x", False),  # bytes after the document
        (event(quantity="1.0"), False),  # a float: parse_event takes it, the decoder leaves it to it
        (event(quantity="9007199254740992"), False),  # above 2**53 - 1
        (event(quantity="18446744073709551616"), False),  # beyond 64 bits: orjson reads a float
        (event(time='"2024-02-29T23:59:59.999Z"', quantity='"1"'), False),  # a real date, but outside the window
        (event(time='"2026-02-29T10:00:00.000Z"'), False),  # no such day
        (event(time='"2026-11-01T24:00:00.000Z"'), False),
        (event(time='"2026-11-01T23:59:60.000Z"'), False),
        (event(time='"2026-11-02T13:00:00.000Z"'), True),  # the window's last millisecond
        (event(time='"2026-11-02T13:00:00.001Z"'), False),
        (event(time='"2026-08-02T12:00:00.000Z"'), True),  # its first
        (event(time='"2026-08-02T11:59:59.999Z"'), False),
        (event(dimensions="null"), False),
        (event(extra="1"), False),
    ],
)
def test_json_corners(raw: bytes, taken: bool) -> None:
    decoder = Decoder(WINDOW)
    fast = decoder.one(raw, NOW_MS)
    assert (fast is not None) is taken
    if fast is not None:
        assert_same_event(fast, raw)
    else:  # left to the specification: it may accept (then with its own rules) or say what is wrong
        try:
            parse_event(raw, NOW_MS, WINDOW)
        except InvalidEvent as exc:
            assert exc.field and exc.reason


def test_time_memos_do_not_leak_between_parts() -> None:
    """Each part of the time is checked on its own: a valid day seen before does not make a bad time of
    day valid, and the windowless decoder still refuses years outside 1900-2299."""
    decoder = Decoder(None)
    assert decoder.one(event(time='"2026-11-01T10:00:00.000Z"'), 0) is not None
    assert decoder.one(event(time='"2026-11-01T10:60:00.000Z"'), 0) is None
    assert decoder.one(event(time='"2026-11-01T10:00:00.000X"'), 0) is None
    assert decoder.one(event(time='"1899-12-31T23:59:59.999Z"'), 0) is None
    assert decoder.one(event(time='"2300-01-01T00:00:00.000Z"'), 0) is None
    assert decoder.one(event(time='"1900-01-01T00:00:00.000Z"'), 0) is not None
    assert decoder.one(event(time='"2299-12-31T23:59:59.999Z"'), 0) is not None


def test_batch_decode_keeps_positions() -> None:
    values = [event(), None, b"not json", orjson.dumps({"id": "x"}), event(id='"e9"')]
    out = Decoder(WINDOW).decode(values, [NOW_MS] * len(values))
    assert [f.id if f is not None else None for f in out] == ["e1", None, None, None, "e9"]


@pytest.mark.parametrize(
    ("text", "value", "taken"),
    [
        ("0", Decimal(0), True),
        ("000", Decimal(0), True),  # leading zeros: the text is the value's, "0"
        ("007", Decimal(7), True),
        ("1234567", Decimal(1234567), True),  # longer than the memoised ones: converted each time
        ("123456789012345678", Decimal(123456789012345678), True),  # 18 digits: the decoder's margin
        ("0001234567", Decimal(1234567), True),
        ("1234567890123456789", None, False),  # 19 digits: beyond the margin, the specification decides
        ("\u0661\u0662", None, False),  # Arabic-Indic digits: str.isdigit says yes, the schema says no
        ("\u00b2", None, False),  # superscript two
        ("12 ", None, False),
        ("", None, False),
    ],
)
def test_whole_number_quantities(text: str, value: Decimal | None, taken: bool) -> None:
    """Whole-number strings (byte counts) skip the pattern and parse_quantity: the same value and the
    canonical text as the specification, the first time (not memoised) and the second (memoised or not)."""
    raw = event(quantity=orjson.dumps(text).decode())
    decoder = Decoder(WINDOW)
    for _ in range(2):
        fast = decoder.one(raw, NOW_MS)
        assert (fast is not None) is taken
        if fast is not None:
            assert fast.quantity == value and type(fast.quantity) is Decimal
            assert fast.quantity_text == format(value, "f")  # hand: "007" -> "7", "000" -> "0"
            assert_same_event(fast, raw)


def test_a_batch_decodes_as_each_event_alone_while_memos_fill_and_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch loop answers from the memos when they all know the values and asks `_accept` otherwise:
    with memos cleared every two entries, a batch of varied events still decodes event by event as a
    fresh decoder decodes each one alone (taken or not, the same fields)."""
    import meterstream.processor.decode as decode_module

    monkeypatch.setattr(decode_module, "_CACHE_MAX", 2)
    texts = [
        event(),
        event(tenant='"other"', quantity='"123456789"'),
        event(time='"2026-11-01T10:60:00.000Z"'),  # a bad minute after a valid one of the same day
        event(dimensions='{"region":"eu","zone":"a"}', quantity='"007"'),
        event(meter='"Bad"'),
        event(time='"2026-11-02T13:00:00.001Z"'),  # past the window
        event(quantity='"12.50"', time='"2026-10-31T23:59:59.999Z"'),
        event(dimensions='{"a\\tb":"x"}'),
        event(),
    ]
    values = texts * 3
    received = [NOW_MS, NOW_MS + 1, NOW_MS] * 9
    batch = Decoder(WINDOW).decode(values, received)
    alone = [Decoder(WINDOW).one(v, r) for v, r in zip(values, received, strict=True)]
    assert batch == alone
    assert [f is not None for f in batch[:9]] == [True, True, False, True, False, False, True, False, True]


def test_each_event_is_judged_against_its_own_receive_time_whatever_the_batch_holds() -> None:
    """The batch loop tries the window common to all its messages first: a time outside it is still judged
    against its own message's window, not refused for another message's, nor taken for another's. Received
    2026-11-02T12:00 (NOW_MS) and two hours later; the window is 92 days back and 60 minutes ahead."""
    two_hours = 7_200_000
    cases = [  # (event time, receive time, taken): by hand from the window's two ends
        ("2026-11-02T12:30:00.000Z", NOW_MS, True),  # 30 min ahead of its own receive time
        ("2026-11-02T13:00:00.001Z", NOW_MS, False),  # 1 ms past its own upper end (later ones allow it)
        ("2026-11-02T14:30:00.000Z", NOW_MS + two_hours, True),  # past the first message's upper end
        ("2026-08-02T12:00:00.000Z", NOW_MS, True),  # exactly 92 days before its receive time
        ("2026-08-02T12:00:00.000Z", NOW_MS + two_hours, False),  # 92 days and 2 hours before
        ("2026-08-02T14:00:00.000Z", NOW_MS + two_hours, True),
    ]
    values = [event(time=f'"{t}"') for t, _, _ in cases]
    received = [r for _, r, _ in cases]
    batch = Decoder(WINDOW).decode(values, received)
    assert [f is not None for f in batch] == [taken for _, _, taken in cases]
    assert [f is not None for f in batch] == [
        Decoder(WINDOW).one(v, r) is not None for v, r in zip(values, received, strict=True)
    ]


def test_a_known_day_and_hour_does_not_make_its_minutes_seconds_or_fraction_valid() -> None:
    """The batch loop looks up the day and hour together (a memo of the ones `_accept` passed), then the rest:
    after 10:00 of a day is known, its other minutes and seconds are taken and bad ones refused, by hand."""
    decoder = Decoder(None)
    values = [
        event(time='"2026-11-01T10:00:00.000Z"'),
        event(time='"2026-11-01T10:59:59.999Z"'),  # same hour: taken
        event(time='"2026-11-01T10:00:60.000Z"'),  # second 60
        event(time='"2026-11-01T10:60:00.000Z"'),  # minute 60
        event(time='"2026-11-01T10:00:00.00xZ"'),
        event(time='"2026-11-01T10-00:00.000Z"'),  # a dash for the colon after the hour
        event(time='"2026-11-01T24:00:00.000Z"'),  # hour 24 of a known day
        event(time='"2026-11-31T10:00:00.000Z"'),  # no such day, same hour
    ]
    assert [f is not None for f in decoder.decode(values, [0] * len(values))] == [True, True] + [False] * 6
    assert [f is not None for f in decoder.decode(values, [0] * len(values))] == [True, True] + [False] * 6
