"""`CloseResult.invoices` as `Documents`: dicts decoded from their JSON when read, equal to a list of the dicts."""

from __future__ import annotations

import orjson
import pytest

from meterstream.invoice_emitter.documents_list import Documents

A = {"tenant": "t1", "customer": "a", "total": "1.50", "lines": [{"amount": "1.50"}]}
B = {"tenant": "t1", "customer": "b", "total": "0", "lines": []}


def test_documents_read_as_the_list_of_their_dicts() -> None:
    docs = Documents([A, ("t1", "b", orjson.dumps(B))])
    assert len(docs) == 2 and docs == [A, B] and [A, B] == docs and docs != [A] and docs != [B, A]
    assert docs[1] == B and docs[-1] is docs[1]  # decoded once, then kept
    assert docs[0:2] == [A, B] and list(docs) == [A, B] and docs == Documents([A, B])
    assert docs.keys() == [("t1", "a"), ("t1", "b")]
    assert docs.encoded(1) == orjson.dumps(B) and docs.encoded(0) == orjson.dumps(A)
    assert Documents() == [] and not Documents()
    with pytest.raises(IndexError):
        docs[2]


def test_keys_and_bytes_need_no_decoding() -> None:
    """A document given as bytes is not decoded to list its keys or hand on its JSON (not even invalid JSON)."""
    docs = Documents([("t1", "x", b"not json")])
    assert docs.keys() == [("t1", "x")] and docs.encoded(0) == b"not json"
    with pytest.raises(orjson.JSONDecodeError):
        docs[0]
