"""Every integer the protocol accepts has a range, so no value a column cannot store, or a
JavaScript client cannot read, gets past the decoder."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import msgspec.inspect as mi
import pytest

from imhub.protocol.messages import MAX_ID, ImMsg


def int_fields(
    t: mi.Type, path: str, seen: frozenset[type] = frozenset()
) -> Iterator[tuple[str, mi.IntType]]:
    """Every integer in a type, nested structs and lists included, with where it is."""
    if isinstance(t, mi.IntType):
        yield path, t
    elif isinstance(t, mi.UnionType):
        for member in t.types:
            yield from int_fields(member, path, seen)
    elif isinstance(t, mi.ListType):
        yield from int_fields(t.item_type, path + "[]", seen)
    elif isinstance(t, mi.StructType):
        if t.cls in seen:  # ImMsg holds ImMsgs: each struct is walked once
            return
        for f in t.fields:
            yield from int_fields(f.type, f"{path}.{f.encode_name}", seen | {t.cls})
    elif not isinstance(t, mi.NoneType | mi.StrType | mi.BoolType):  # those have no range
        raise AssertionError(f"{path}: a {type(t).__name__} the range check does not know")


def unbounded(kind: type[msgspec.Struct]) -> list[str]:
    return [
        path
        for path, t in int_fields(mi.type_info(kind), "$")
        if (t.ge is None and t.gt is None)
        or (t.le is None and t.lt is None)
        or (t.ge if t.ge is not None else (t.gt or 0) + 1) < 0
        or (t.le if t.le is not None else (t.lt or 0) - 1) > MAX_ID
    ]


def test_every_integer_of_the_message_has_a_range() -> None:
    assert list(int_fields(mi.type_info(ImMsg), "$"))  # the walk does find them
    assert unbounded(ImMsg) == []


@pytest.mark.parametrize("kind", [ImMsg])
def test_walk_finds_nested_fields(kind: type[msgspec.Struct]) -> None:
    paths = {p for p, _ in int_fields(mi.type_info(kind), "$")}
    assert {"$.convs[].chatId", "$.unread[].count", "$.memberIds[]"} <= paths
