"""The HTTP API's body parser: whatever the bytes, a request or a 400; every integer in range."""

from __future__ import annotations

import json

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imhub.http.api import REQUESTS, parse_body
from imhub.protocol.errors import ErrorCode, ImError
from tests.protocol.bad_payloads import (
    UNDECODABLE,
    corrupted,
    json_objects_with,
    json_values,
    near_json,
)
from tests.protocol.test_ranges import int_fields, unbounded

KINDS = st.sampled_from(REQUESTS)


def fields(kind: type[msgspec.Struct]) -> list[str]:
    return [f.encode_name for f in mi.type_info(kind).fields]  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", REQUESTS, ids=lambda k: k.__name__)
def test_every_integer_of_a_request_has_a_range(kind: type[msgspec.Struct]) -> None:
    assert unbounded(kind) == []


def test_the_range_is_that_of_the_column() -> None:
    from imhub.http.api import NoticeRequest, TokenRequest

    ranges = {p: (t.ge, t.le) for p, t in int_fields(mi.type_info(NoticeRequest), "$")}
    assert ranges["$.bodyType"] == (0, 2**31 - 1)  # an INTEGER column
    ranges = {p: (t.ge, t.le) for p, t in int_fields(mi.type_info(TokenRequest), "$")}
    assert ranges["$.ttl"] == (1, 2**31 - 1)


def _object_keys(payload: bytes) -> set[str] | None:
    """The keys of a payload that is one JSON object in UTF-8, else None."""
    try:
        value = json.loads(payload.decode())
    except (ValueError, RecursionError):
        return None
    return set(value) if isinstance(value, dict) else None


@pytest.mark.parametrize("kind", REQUESTS, ids=lambda k: k.__name__)
@pytest.mark.parametrize("payload", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_undecodable_bodies_are_a_bad_request(kind: type[msgspec.Struct], payload: bytes) -> None:
    """A payload that is not one JSON object, or lacks a field the kind requires, is a 400;
    one that holds only fields a kind ignores (the protocol's, for a kind with no required
    field) is read as the request it is, or refused."""
    keys = _object_keys(payload)
    required = {f.encode_name for f in mi.type_info(kind).fields if f.required}  # type: ignore[attr-defined]
    if keys is None or not required <= keys:
        with pytest.raises(ImError) as err:
            parse_body(payload, kind)
        assert err.value.code == ErrorCode.BAD_REQUEST
    else:
        _a_request_or_a_400(payload, kind)


def _a_request_or_a_400(payload: bytes, kind: type[msgspec.Struct]) -> None:
    try:
        req = parse_body(payload, kind)
    except ImError as exc:
        assert exc.code == ErrorCode.BAD_REQUEST and exc.reason
        return
    assert parse_body(msgspec.json.encode(req), kind) == req


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | near_json(), KINDS)
def test_arbitrary_bytes(payload: bytes, kind: type[msgspec.Struct]) -> None:
    _a_request_or_a_400(payload, kind)


@settings(max_examples=80, deadline=None)
@given(st.data(), KINDS)
def test_arbitrary_json(data: st.DataObject, kind: type[msgspec.Struct]) -> None:
    value = data.draw(json_values() | json_objects_with(fields(kind)))
    _a_request_or_a_400(json.dumps(value).encode(), kind)


@settings(max_examples=80, deadline=None)
@given(st.data(), KINDS)
def test_arbitrary_json_with_arbitrary_bytes_in_it(
    data: st.DataObject, kind: type[msgspec.Struct]
) -> None:
    _a_request_or_a_400(data.draw(corrupted(json_objects_with(fields(kind)))), kind)


@settings(max_examples=200, deadline=None)
@given(st.data(), KINDS, st.integers(min_value=-(2**70), max_value=2**70))
def test_any_integer_in_any_field(
    data: st.DataObject, kind: type[msgspec.Struct], number: int
) -> None:
    field = data.draw(st.sampled_from(fields(kind)))
    _a_request_or_a_400(json.dumps({field: number}).encode(), kind)
