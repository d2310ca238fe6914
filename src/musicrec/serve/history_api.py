"""``POST /v1/history/recommendations``: recommendations for an uploaded listening history.

The body is the export file itself, as delivered (``curl --data-binary @my_spotify_data.zip``):
a Spotify Extended Streaming History JSON file, a ListenBrainz listens file (JSON / JSON lines),
a CSV with ``artist`` (and ``track``, ``timestamp``) columns, or a zip of such files. It is read
by the ingest readers and matched to the model's catalogue exactly as ``musicrec recommend
--history`` does (``serve.history``); nothing is stored. Bodies up to ``HISTORY_BYTES`` are taken.
"""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

from fastapi import Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from musicrec import MusicrecError
from musicrec.serve.history import FORMATS, history_of

PATH = "/v1/history/recommendations"
#: the largest upload this route takes (a Spotify export is a few to a few tens of MB)
HISTORY_BYTES = 64 << 20


class Unmatched(BaseModel):
    name: str
    plays: int


class HistorySummary(BaseModel):
    source: str = Field(description="how the upload was read: spotify-history, listenbrainz or csv")
    plays: int = Field(description="plays in the upload")
    matched_plays: int = Field(description="plays of artists (tracks) the model knows")
    distinct_items: int
    unmatched: list[Unmatched] = Field(description="the most played artists (tracks) the model does not know")
    unmatched_names: int


def _file_name(body: bytes, fmt: str | None) -> str:
    """A name the readers recognise the upload by (they look at names, not bodies)."""
    head = body[:4096].lstrip()
    if body[:4] == b"PK\x03\x04":
        return "upload.zip"
    if fmt == "spotify-history" or (fmt is None and head[:1] == b"[" and b'"ms_played"' in head and b'"ts"' in head):
        return "Streaming_History_Audio_upload.json"
    if fmt == "listenbrainz" or (fmt is None and head[:1] in (b"[", b"{")):
        return "listens.jsonl" if b"\n{" in body[:65536] and head[:1] == b"{" else "listens.json"
    return "upload.csv"


def add_route(api, holder, cards_model, err) -> None:
    """Register the route on ``api`` (an ``APIRouter``) answering from ``holder.service``."""
    from musicrec.serve import responses

    class HistoryRecommendations(BaseModel):
        model: str
        version: str
        user_id: str | None = None
        items: list[cards_model]
        history: HistorySummary

    body_doc = {"requestBody": {"required": True, "description": "the export file itself, zipped or not",
                                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}

    @api.post(PATH, response_model=HistoryRecommendations, tags=["recommend"], responses=err(413, 422),
              openapi_extra=body_doc)
    async def history_recommendations(request: Request, k: Annotated[int, Query(ge=1, le=1000)] = 10,
                                      format: Annotated[str | None, Query(description=", ".join(FORMATS))] = None):
        """Recommendations for an uploaded export (the request body is the file, zipped or not)."""
        if format is not None and format not in FORMATS:
            raise MusicrecError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        body = await request.body()
        if not body.strip():
            raise MusicrecError("the request body is empty: send the export file itself (curl --data-binary @FILE)")
        svc = holder.service

        def answer():
            with tempfile.TemporaryDirectory(prefix="musicrec-history-") as tmp:
                path = os.path.join(tmp, _file_name(body, format))
                with open(path, "wb") as fh:
                    fh.write(body)
                found = history_of(svc, path, format)
            return found, svc.recommend_history(found.items, found.plays, k=k)

        found, items = await run_in_threadpool(answer)
        return responses.json_response({"model": svc.model.name, "version": svc.version, "user_id": None,
                                        "items": [responses.card(c) for c in items], "history": found.summary()})
