"""The API's documentation, served from the generated OpenAPI document: the document itself
at ``/api/v1/openapi.json``, and ``/docs``, a self-contained HTML page made from it (no
script, no external style or font), so both always describe the routes the server runs."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from imhub import __version__
from imhub.http.openapi import document
from imhub.http.responses import json_response
from imhub.http.routes import Params, Route

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
color:#222}
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:0 .2em}
pre{padding:.5em;overflow-x:auto}
h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
.op{border:1px solid #ddd;border-radius:4px;padding:.2rem 1rem;margin:1rem 0}
.m{font-weight:bold;display:inline-block;min-width:4.5em}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.15rem .5rem;text-align:left;vertical-align:top}
"""
_CODE = re.compile(r"`([^`]+)`")


def _text(markdown: str) -> str:
    """The few Markdown marks the descriptions use: `code`, and paragraphs."""
    paragraphs = [p.strip() for p in markdown.split("\n\n") if p.strip()]
    return "".join(
        "<p>" + _CODE.sub(r"<code>\1</code>", html.escape(p, quote=False)) + "</p>"
        for p in paragraphs
    )


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few words, with links to the named ones."""
    if "$ref" in schema:
        name = html.escape(schema["$ref"].rsplit("/", 1)[1])
        return f'<a href="#schema-{name}">{name}</a>'
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    words = [html.escape(str(kind))]
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"),
                       ("maxLength", "length ≤"), ("pattern", "matching"),
                       ("default", "default")):  # fmt: skip
        if key in schema:
            words.append(f"{label} <code>{html.escape(json.dumps(schema[key]))}</code>")
    return ", ".join(words)


def _schema_table(schema: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    if not props:
        return "<p>(no fields)</p>"
    required = set(schema.get("required", ()))
    rows = "".join(
        f"<tr><td><code>{html.escape(name)}</code></td><td>{_type(s)}</td>"
        f"<td>{'yes' if name in required else ''}</td></tr>"
        for name, s in props.items()
    )
    return f"<table><tr><th>field</th><th>type</th><th>required</th></tr>{rows}</table>"


def _operation(method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op" id="{html.escape(op["operationId"])}">',
        f'<h3><span class="m">{method.upper()}</span> <code>{html.escape(path)}</code></h3>',
        f"<p><b>{html.escape(op.get('summary', ''))}</b>"
        f"{' (API key)' if op.get('security') else ' (no API key)'}</p>",
        _text(op.get("description", "")),
    ]
    if op.get("parameters"):
        rows = "".join(
            f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
            f"<td>{_type(p['schema'])}</td><td>{'yes' if p['required'] else ''}</td></tr>"
            for p in op["parameters"]
        )
        parts.append(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th></tr>"
            f"{rows}</table>"
        )
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        parts.append(f"<p>Body: {_type(schema)}</p>")
    answers = []
    for status, response in op["responses"].items():
        content = response.get("content", {})
        shown = ", ".join(f"{_type(c['schema'])} ({m})" for m, c in content.items())
        answers.append(f"<li><b>{status}</b> {html.escape(response['description'])} {shown}</li>")
    parts.append(f"<ul>{''.join(answers)}</ul></div>")
    return "".join(parts)


def render(doc: dict[str, Any]) -> str:
    """The HTML page of an OpenAPI document."""
    info = doc["info"]
    by_tag: dict[str, list[str]] = {t["name"]: [] for t in doc.get("tags", ())}
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            by_tag.setdefault(op["tags"][0], []).append(_operation(method, path, op))
    descriptions = {t["name"]: t.get("description", "") for t in doc.get("tags", ())}
    sections = "".join(
        f'<h2 id="tag-{html.escape(tag)}">{html.escape(tag)}</h2>'
        f"<p>{html.escape(descriptions.get(tag, ''))}</p>{''.join(ops)}"
        for tag, ops in by_tag.items()
        if ops
    )
    schemas = "".join(
        f'<h3 id="schema-{html.escape(name)}">{html.escape(name)}</h3>'
        f"{_text(schema.get('description', ''))}{_schema_table(schema)}"
        for name, schema in sorted(doc["components"]["schemas"].items())
    )
    toc = " · ".join(f'<a href="#tag-{html.escape(t)}">{html.escape(t)}</a>' for t in by_tag)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(info['title'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(info['title'])} {html.escape(info['version'])}</h1>"
        f"{_text(info.get('description', ''))}"
        '<p>The machine-readable document: <a href="/api/v1/openapi.json">'
        f"/api/v1/openapi.json</a>.</p><p>{toc}</p>{sections}"
        f"<h2>Schemas</h2>{schemas}</body></html>"
    )


class ApiDocs:
    """Serves the document and its page for the routes ``routes()`` gives (the router's),
    built on first request and kept: the routes do not change while the server runs."""

    def __init__(self, routes: Callable[[], Sequence[Route]]) -> None:
        self._routes = routes
        self._doc: dict[str, Any] | None = None
        self._page: bytes | None = None

    def document(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = document(self._routes(), __version__)
        return self._doc

    async def openapi(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        return json_response(self.document())

    async def page(self, request: web.BaseRequest, params: Params) -> web.StreamResponse:
        if self._page is None:
            self._page = render(self.document()).encode()
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/api/v1/openapi.json", self.openapi, "This API's OpenAPI document",
                  api_key=False, tag="docs"),
            Route("GET", "/docs", self.page, "This API's documentation, as a page",
                  api_key=False, tag="docs", media="text/html"),
        ]  # fmt: skip
