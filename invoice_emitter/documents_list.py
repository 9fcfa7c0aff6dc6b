"""`CloseResult.invoices`: the close's documents as dicts, each decoded from its JSON only when it is read.

A close of 10,000 customers numbers each document as JSON (`records.EncodedFinal`) and hands those bytes on to
the files, ClickHouse and the topic as they are; callers mostly count the documents (the CLI, the billing run, the
bench). Decoding each one into a dict up front cost ~30 us of the close's own process per invoice; here a
document is decoded (`orjson.loads`, the dict the close returned before) the first time it is read, then kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

import orjson

Key = tuple[str, str]  # (tenant, customer)


class Documents(Sequence[dict[str, Any]]):
    """A read-only list of documents (dicts), each given as a dict or as its JSON (`(tenant, customer, bytes)`),
    in order. Equal to a list (or another `Documents`) of the same dicts."""

    __slots__ = ("_items", "_keys")

    def __init__(self, items: Iterable[dict[str, Any] | tuple[str, str, bytes]] = ()) -> None:
        self._items: list[Any] = []
        self._keys: list[Key] = []
        for item in items:
            if isinstance(item, dict):
                self._keys.append((item["tenant"], item["customer"]))
            else:
                self._keys.append((item[0], item[1]))
                item = _Encoded(item[2])
            self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index]
        if isinstance(item, _Encoded):
            if item.doc is None:
                item.doc = orjson.loads(item.data)
            return item.doc
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self._items)):
            yield self[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Documents, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable contents, like a list

    def __repr__(self) -> str:
        return f"Documents({len(self)} documents)"

    def keys(self) -> list[Key]:
        """(tenant, customer) of each document, in order, without decoding any."""
        return list(self._keys)

    def encoded(self, index: int) -> bytes:
        """The document's compact JSON: the bytes it was given as (`orjson.dumps` of its dict gives the same), or
        its dict encoded (`orjson.dumps`)."""
        item = self._items[index]
        return item.data if isinstance(item, _Encoded) else orjson.dumps(item)


class _Encoded:
    __slots__ = ("data", "doc")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.doc: dict[str, Any] | None = None  # decoded when first read
