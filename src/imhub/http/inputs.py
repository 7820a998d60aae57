"""What a request carries, read as typed structs: the JSON body, the query string and the
path parameters. Whatever a peer sends, the outcome is a struct or ``ImError(BAD_REQUEST)``
naming what was wrong, before anything is done with the request."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from imhub.protocol import codec
from imhub.protocol.errors import ErrorCode, ImError

T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def parse_body(payload: bytes, kind: type[T]) -> T:
    """A request body as ``kind``, or ``ImError(BAD_REQUEST)`` whatever the bytes hold."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    return codec.decode_as(decoder, payload, "request")  # type: ignore[no-any-return]


async def body_of(request: web.BaseRequest, kind: type[T]) -> T:
    """The body, read by the gateway already (within the deadline)."""
    return parse_body(await request.read(), kind)


_WHOLE = re.compile(r"-?[0-9]+")


def _integer_fields(kind: type[Any]) -> list[str]:
    """The names (as sent) of ``kind``'s integer fields, optional ones included."""
    out = []
    for f in msgspec.structs.fields(kind):
        info = msgspec.inspect.type_info(f.type)
        kinds = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
        if any(isinstance(k, msgspec.inspect.IntType) for k in kinds):
            out.append(f.encode_name)
    return out


def _convert(values: dict[str, str], kind: type[T], what: str) -> T:
    # A number in a query or a path is written as digits: "1e3" or "2.0" would convert.
    for name in _integer_fields(kind):
        if name in values and not _WHOLE.fullmatch(values[name]):
            raise ImError(ErrorCode.BAD_REQUEST, f"invalid {what}: {name} must be a whole number")
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ImError(ErrorCode.BAD_REQUEST, codec.refusal(exc, what)) from None


def query_of(request: web.BaseRequest, kind: type[T]) -> T:
    """The query string as ``kind`` (numbers and booleans from their text); parameters it does
    not know are ignored, as unknown fields of a body are."""
    return _convert({k: request.query[k] for k in request.query}, kind, "query")


def params_of(params: dict[str, str], kind: type[T]) -> T:
    """The path parameters as ``kind``."""
    return _convert(params, kind, "path")
