"""The OpenAPI 3.1 document, generated from the route declarations and their structs: what
the server decodes and encodes is what the document says, by construction.

Schemas come from ``msgspec.json.schema_components`` (JSON Schema 2020-12, which OpenAPI 3.1
uses as it is). Path and query parameters are the properties of a route's ``params`` and
``query`` structs. Every route documents the errors it may answer, each an ``ErrorBody``:
400 for input it cannot read, 401 without the API key, 408 and 413 for a body too slow or
too large, 500 for a failure of ours, 503 while the server stops, and those the route
declares (404, 403, 409).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import msgspec

from imhub.http.models import ErrorBody
from imhub.http.routes import Route

REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{(\w+)\}")
DOCUMENTED_TAGS = {
    "users": "Create, read, list, change and delete users; mint their tokens.",
    "presence": "Who is online, on which client types.",
    "notices": "Notices to users, to a group's members, to everyone online.",
    "messages": "System messages into a chat or a group.",
    "conversations": "A user's conversations, unread counts and history.",
    "groups": "Every group operation of the protocol, by a user the backend names.",
    "docs": "This document, and the page generated from it.",
}


def documented(routes: Iterable[Route]) -> list[Route]:
    """The routes the document describes: the API's (the probes and the browser client's
    files are documented with them, in the README)."""
    return [r for r in routes if r.tag in DOCUMENTED_TAGS]


def _struct_types(routes: list[Route]) -> list[type[Any]]:
    kinds: dict[type[Any], None] = {ErrorBody: None}
    for r in routes:
        for kind in (r.body, r.answer, r.query, r.params):
            if kind is not None:
                kinds[kind] = None
    return list(kinds)


def _parameters(
    route: Route, components: dict[str, Any], refs: dict[type[Any], str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names = _PARAM.findall(route.path)
    props: dict[str, Any] = {}
    if route.params is not None:
        props = components[refs[route.params]].get("properties", {})
    for name in names:
        schema = props.get(name, {"type": "string"})
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    if route.query is not None:
        component = components[refs[route.query]]
        required = set(component.get("required", ()))
        for name, schema in component.get("properties", {}).items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            param["schema"] = _not_null(schema)
            out.append(param)
    return out


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: ``X | None`` is documented as ``X``."""
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(options) != 1:
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**options[0], **rest}


def error_statuses(route: Route) -> list[int]:
    statuses = {400, 500, *route.errors}
    if route.api_key:  # the API's routes: the key, its rate limit, a server that is stopping
        statuses |= {401, 429, 503}
    if route.body is not None:
        statuses |= {408, 413}
    return sorted(statuses)


def _operation(
    route: Route, components: dict[str, Any], refs: dict[type[Any], str]
) -> dict[str, Any]:
    def ref(kind: type[Any]) -> dict[str, str]:
        return {"$ref": REF.format(name=refs[kind])}

    ok: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.answer is not None:
        ok["content"] = {route.media: {"schema": ref(route.answer)}}
    elif route.status != 204:
        schema = {"type": "string"} if route.media.startswith("text/") else {"type": "object"}
        ok["content"] = {route.media: {"schema": schema}}
    responses: dict[str, Any] = {str(route.status): ok}
    for status in error_statuses(route):
        responses[str(status)] = {
            "description": HTTPStatus(status).phrase,
            "content": {"application/json": {"schema": ref(ErrorBody)}},
        }
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route, components, refs),
        "responses": responses,
        "security": [{"bearer": []}, {"apiKey": []}] if route.api_key else [],
    }
    if route.description:
        op["description"] = route.description
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(route.body)}},
        }
    return op


def _operation_id(route: Route) -> str:
    words = re.findall(r"[A-Za-z0-9]+", _PARAM.sub(r"by \1", route.path.removeprefix("/api/v1")))
    return "_".join([route.method.lower(), *words]) or route.method.lower()


def document(routes: Iterable[Route], version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (those of a documented tag)."""
    chosen = documented(routes)
    kinds = _struct_types(chosen)
    schemas, components = msgspec.json.schema_components(kinds, ref_template=REF)
    refs = {kind: s["$ref"].rsplit("/", 1)[1] for kind, s in zip(kinds, schemas, strict=True)}
    paths: dict[str, dict[str, Any]] = {}
    for route in chosen:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, components, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imhub HTTP API",
            "version": version,
            "description": "The API for business backends, on the server's one port. Every "
            "route under /api/v1 but this document needs the API key, as "
            "`Authorization: Bearer KEY` or `X-Api-Key: KEY`. Every error is "
            '`{"code": N, "reason": "…"}` with HTTP status N. Lists are paged: `limit`, '
            "and `after` = the `next` of the previous page (absent on the last page).",
        },
        "tags": [{"name": n, "description": d} for n, d in DOCUMENTED_TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
        },
    }
