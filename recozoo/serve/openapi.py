"""The API description served at ``/openapi.json`` (OpenAPI 3.1) and a self-contained ``/docs`` page.

Written by hand (the app is plain Starlette): one entry per route, with the
request and response shapes the handlers in :mod:`recozoo.serve.app` produce.
The ``/docs`` page renders this description without loading anything from
the network.
"""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["spec", "docs_html"]

_ERR = {"description": "one-line error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
_ITEMS = {"type": "array", "items": {"type": "object", "properties": {
    "item": {"description": "raw item id"}, "score": {"type": "number"}}}}
_ID = {"description": "raw id (integer or string, as in the run's data)"}


def _q(name: str, desc: str, required: bool = True, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": required, "description": desc,
            "schema": schema or {"type": "string"}}


def _body(schema: dict, desc: str) -> dict:
    return {"required": True, "description": desc, "content": {"application/json": {"schema": schema}}}


def _resp(schema: dict, desc: str = "OK", errors=(400, 404)) -> dict:
    out = {"200": {"description": desc, "content": {"application/json": {"schema": schema}}}}
    for code in errors:
        out[str(code)] = _ERR
    return out


def spec() -> dict[str, Any]:
    from recozoo import __version__
    k = _q("k", "how many items (1-10000, default 10)", False, {"type": "integer", "default": 10})
    ratings = {"type": "object", "additionalProperties": {"type": "number"},
               "description": "{item id: rating} of a new user"}
    paths = {
        "/health": {"get": {"summary": "liveness and the served run's sizes",
                            "responses": _resp({"type": "object"}, errors=())}},
        "/recommend": {
            "get": {"summary": "top-k for a known user (training and live-event items excluded)",
                    "parameters": [_q("user", "raw user id"), k],
                    "responses": _resp({"type": "object", "properties": {"user": {"type": "string"},
                                                                         "items": _ITEMS}})},
            "post": {"summary": "top-k for a new user from their ratings (fold-in)",
                     "requestBody": _body({"type": "object", "properties": {"ratings": ratings,
                                                                            "k": {"type": "integer"}},
                                           "required": ["ratings"]}, "the new user's ratings"),
                     "responses": _resp({"type": "object", "properties": {"items": _ITEMS}},
                                        errors=(400, 404, 408, 413))}},
        "/recommend/batch": {"post": {
            "summary": "many users in one call (each entry answered or given its own error)",
            "requestBody": _body({"type": "object", "properties": {
                "requests": {"type": "array", "maxItems": 1000, "items": {"type": "object", "properties": {
                    "user": _ID, "ratings": ratings, "k": {"type": "integer"}}}},
                "k": {"type": "integer"}}, "required": ["requests"]}, "1-1000 requests"),
            "responses": _resp({"type": "object", "properties": {"results": {"type": "array"}}},
                               errors=(400, 408, 413))}},
        "/predict": {"get": {"summary": "one predicted rating (score)",
                             "parameters": [_q("user", "raw user id"), _q("item", "raw item id")],
                             "responses": _resp({"type": "object", "properties": {
                                 "user": {"type": "string"}, "item": {"type": "string"},
                                 "rating": {"type": "number"}}})}},
        "/model": {"get": {"summary": "the served run: model, settings, data sizes, fold-in, events",
                           "responses": _resp({"type": "object"}, errors=())}},
        "/interactions": {"post": {
            "summary": "store live events durably (SQLite, WAL, synchronous=FULL)",
            "requestBody": _body({"oneOf": [
                {"type": "object", "properties": {"user": _ID, "item": _ID, "rating": {"type": "number"}},
                 "required": ["user", "item"]},
                {"type": "object", "properties": {"events": {"type": "array", "maxItems": 10000}},
                 "required": ["events"]}]}, "one event or {\"events\": [...]}; no rating = implicit"),
            "responses": _resp({"type": "object", "properties": {
                "stored": {"type": "integer"}, "ids": {"type": "array", "items": {"type": "integer"}},
                "reflected": {"type": "boolean"}}}, errors=(400, 404, 408, 413))}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text format)",
                             "responses": {"200": {"description": "text/plain exposition format"}}}},
        "/admin/swap": {"post": {
            "summary": "serve another run (or reload RUN_DIR) without dropping requests",
            "security": [{"bearer": []}],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"run_dir": {"type": "string"}}}}}},
            "responses": _resp({"type": "object"}, errors=(400, 401, 403, 409))}},
    }
    return {"openapi": "3.1.0",
            "info": {"title": "recozoo serve", "version": __version__,
                     "description": "Recommendations from a trained recozoo run, by raw ids."},
            "paths": paths,
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}}


def docs_html() -> str:
    s = spec()
    rows = []
    for path, ops in s["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            body = "JSON body" if "requestBody" in op else ""
            rows.append(f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['summary'])}</td><td>{html.escape(params or body)}</td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>recozoo serve API</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left}"
            "tr:nth-child(even){background:#f3f3f3}</style></head><body>"
            f"<h1>recozoo serve {html.escape(s['info']['version'])}</h1>"
            "<p>Errors are <code>{\"error\": \"one line\"}</code> with a 4xx status. "
            "The machine-readable description: <a href='/openapi.json'>/openapi.json</a>.</p>"
            "<table><tr><th>method</th><th>path</th><th>what</th><th>input</th></tr>"
            + "".join(rows) + "</table>"
            f"<details><summary>OpenAPI</summary><pre>{html.escape(json.dumps(s, indent=2))}</pre></details>"
            "</body></html>")
