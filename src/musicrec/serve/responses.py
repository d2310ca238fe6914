"""Recommendation answers encoded straight to JSON bytes (used by ``musicrec.serve.app``).

FastAPI validates a returned dict against the endpoint's ``response_model`` (a pydantic model
built per item card) before encoding it; for ten cards that cost as much as the model's own work
(about 1 ms a request). The service already builds cards of the right types, so these endpoints
return a ``Response`` of bytes instead, and the decorators keep ``response_model`` for the docs.
``pydantic_core.to_json`` is the encoder FastAPI used, so the bytes are the same: same key order
(the models' field order, an absent ``user_id`` as null), same float and string formatting.
"""

from __future__ import annotations

import math

import pydantic_core
from fastapi.responses import Response
from pydantic import BaseModel

# the fields of ``ItemCard`` in ``musicrec.serve.app``, in its order (a test checks they match)
CARD_FIELDS = ("item_id", "source_id", "name", "artist", "tags", "score", "reason")


def card(c: dict) -> dict:
    """The card's fields in ``ItemCard`` order; a score that is not a finite number is a bug here,
    not a null in the answer."""
    if not math.isfinite(c["score"]):
        raise ValueError(f"non-finite score {c['score']!r} for item {c['item_id']!r}")
    return {f: c[f] for f in CARD_FIELDS}


def json_response(body: dict) -> Response:
    """``body`` (plain str/int/float/bool/None/list/dict values) as an application/json response."""
    return Response(content=pydantic_core.to_json(body), media_type="application/json")


def recommendations(model: str, version: str, user_id: str | None, items: list[dict]) -> Response:
    """A ``Recommendations`` answer."""
    return json_response({"model": model, "version": version, "user_id": user_id,
                          "items": [card(c) for c in items]})


def similar_items(model: str, version: str, item: dict, items: list[dict]) -> Response:
    """A ``SimilarItems`` answer."""
    return json_response({"model": model, "version": version, "item": card(item),
                          "items": [card(c) for c in items]})


class ErrorDetail(BaseModel):
    code: int
    message: str


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code": int, "message": str}}`` (one line, no internals)."""

    error: ErrorDetail


ERROR_TEXT = {400: "Host header not allowed", 401: "missing or invalid API key", 403: "refused (e.g. a folder "
              "outside the reload root)", 404: "unknown listener, item or name", 409: "does not fit the "
              "server's state (e.g. plays for another store)", 413: "request body too large",
              422: "invalid request (one-line message)", 503: "no store to write posted plays to"}


def errors(*codes: int) -> dict:
    """The ``responses=`` of a route answering these error codes (and 400, a foreign Host) with an
    ``ErrorBody``, for the OpenAPI docs; a 422 among them replaces FastAPI's default validation-error
    schema, which this API never sends."""
    return {c: {"model": ErrorBody, "description": ERROR_TEXT[c]} for c in sorted({400, *codes})}
