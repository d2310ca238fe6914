"""Request bodies read as JSON whatever their Content-Type, and the 422 message for one that is not
a JSON object (used by ``musicrec.serve.app``).

``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``; FastAPI hands a body of a non-JSON
type to validation as raw bytes, which fails with "Input should be a valid dictionary". Every body
this API takes is JSON, so the header is not worth a failed request.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.routing import APIRoute


class JsonBodyRoute(APIRoute):
    """A route that reads its request body as JSON whatever the Content-Type says; a body that is
    not JSON still gets a 422 (``body_message``). The OpenAPI schema is unchanged (application/json).
    ``body_example`` is the body model's first OpenAPI example, for that message."""

    def __init__(self, path: str, endpoint, **kwargs):
        super().__init__(path, endpoint, **kwargs)
        self.body_example = _body_example(self.body_field.field_info.annotation) if self.body_field else None

    def get_route_handler(self):
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def read_body_as_json(request: Request):
            if not _is_json(request.headers.get("content-type")):
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
                request = Request(scope, request.receive)
            return await handler(request)

        return read_body_as_json


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _body_example(annotation) -> str | None:
    """The first ``examples`` entry of the body model in ``annotation`` (``Model`` or ``Model | None``)."""
    for model in (annotation, *getattr(annotation, "__args__", ())):
        extra = getattr(model, "model_config", {}).get("json_schema_extra") if isinstance(model, type) else None
        if isinstance(extra, dict) and extra.get("examples"):
            return json.dumps(extra["examples"][0])
    return None


def body_message(err: dict, example: str | None) -> str | None:
    """A message for a body that is not JSON, or is JSON but not an object; None for other errors."""
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid":
        what = f"the request body is not valid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
    elif loc == ("body",) and err.get("type") == "missing":
        what = "the request body is empty"
    elif loc == ("body",) and err.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        what = f"the request body is JSON {_json_kind(err.get('input'))}, not an object"
    else:
        return None
    how = f"expected a JSON object such as {example}" if example else "expected a JSON object"
    return (f"{what}: {how}, sent as the raw body, e.g. curl -X POST URL -H 'Content-Type: application/json' "
            f"-d '{example or '{}'}'")


def _json_kind(value) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), "a value")
