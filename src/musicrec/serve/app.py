"""The HTTP API (FastAPI) over a ``Service``, plus the web page at ``/``.

Endpoints (JSON; item cards as in ``musicrec.serve.service``)::

    GET  /health                                  model, version, catalogue size (no key needed)
    GET  /metrics                                 Prometheus text
    GET  /v1/users/{user_id}/recommendations      ?k=10&exclude_seen=true&max_per_artist=&diversity=
    POST /v1/recommendations                      {"recent_plays", "seed_artists", "k", ...}
    GET  /v1/items/{item_id}/similar              ?k=10
    GET  /v1/search                               ?q=&limit=10
    POST /v1/users/{user_id}/events               {"plays": [{"item_id", "timestamp", "ms_played"}]}
    POST /admin/reload                            {"model_dir": optional}: hot-swap the model

A POST body is read as JSON whatever its Content-Type says (``curl -d`` sends a form type), and a
body that is not one JSON object gets a 422 that shows an example. Every error is
``{"error": {"code": int, "message": str}}`` without internals. With an API key,
every path but ``/health``, the web page and the API docs needs ``Authorization: Bearer KEY`` or
``X-API-Key: KEY``. The read endpoints run on the event loop: they are short CPU work (about
0.3-2 ms), and a hop to the thread pool made them 2.4x slower under load (benchmarks/serve_load.py);
posting plays and reloading (store writes, index builds) run in the thread pool, and so does a session
request naming more than ``guards.FEW_NAMES`` ids, artists or tags (fuzzy name matching). Limits on
what one request may ask (names, timestamps, Host header, reload folders) live in ``guards``. The recommendation
endpoints answer pre-encoded JSON (``musicrec.serve.responses``): the same bytes without validating
every item card against the response model, which stays on the route for the docs; plain requests to the
two busiest ones skip FastAPI's routing altogether (``fast_routes``: same bytes, errors left to FastAPI).
Each request reads ``holder.service`` once,
and a reload replaces that reference only after the new Service is fully built, so a request
never sees a half-loaded model.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hmac
import json
import logging
import os
import threading
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, Path, Query, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool,
                      StringConstraints)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from musicrec import MusicrecError, __version__
from musicrec.serve import guards, heap, history_api, responses
from musicrec.serve.fast_routes import FastRoutes
from musicrec.serve.json_body import JsonBodyRoute, body_message
from musicrec.serve.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from musicrec.serve.service import NoStore, NotFound, Service

log = logging.getLogger("musicrec.serve")

MAX_K = 1000
MAX_LIST = guards.MAX_NAMES         # ids or names in one list of a request body
MAX_PER_ARTIST = 1_000_000
WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
# reachable without the key: liveness, the web page (it asks for the key itself), the API docs
PUBLIC_PATHS = frozenset({"/health", "/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)

Id = Annotated[str, StringConstraints(min_length=1, max_length=guards.MAX_NAME_CHARS)] | int
JsonInt = Annotated[int, BeforeValidator(guards.json_number)]      # not true or "10" (a body's numbers)
Timestamp = Annotated[dt.datetime | None, BeforeValidator(guards.timestamp_before),
                      AfterValidator(guards.timestamp_after)]


# ---------------------------------------------------------------- request and response bodies
class ItemCard(BaseModel):
    item_id: int = Field(description="store id of the artist or track")
    source_id: str | None = Field(description="the id in the dataset it came from")
    name: str
    artist: str | None
    tags: list[str] = Field(description="up to 5 tags, heaviest first")
    score: float
    reason: str = Field(description='e.g. "similar to Muse you played", "popular among listeners of rock"')


class SearchHit(BaseModel):
    item_id: int
    source_id: str | None
    name: str
    artist: str | None
    tags: list[str]


class Recommendations(BaseModel):
    model: str
    version: str
    user_id: str | None = None
    items: list[ItemCard]


class SimilarItems(BaseModel):
    model: str
    version: str
    item: ItemCard = Field(description="the item asked about (score 1, no reason)")
    items: list[ItemCard]


class SearchResults(BaseModel):
    query: str
    items: list[SearchHit]


class SessionRequest(BaseModel):
    """An anonymous listener or a live session; ids are store ids, source ids or names."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"seed_artists": ["radiohead", "bjork"], "k": 10}]})
    recent_plays: list[Id] = Field(default_factory=list, max_length=MAX_LIST, description="this session, oldest first")
    seed_artists: list[Id] = Field(default_factory=list, max_length=MAX_LIST, description="artists the listener likes")
    seed_tags: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=50, description='genres/tags the listener likes, e.g. "shoegaze"')
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    exclude_seen: StrictBool = True       # a JSON true/false: 0 or "no" is not silently read as one
    max_per_artist: JsonInt | None = Field(None, ge=1, le=MAX_PER_ARTIST)
    diversity: Annotated[float | None, BeforeValidator(guards.json_number)] = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="MMR weight of diversity (0 = relevance only)")


class Play(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Id
    timestamp: Timestamp = Field(None, description=f"ISO 8601 or Unix seconds, {guards.TIME_RANGE}; default now")
    ms_played: JsonInt | None = Field(None, ge=0, le=guards.MAX_MS_PLAYED)


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"plays": [{"item_id": "Muse"}]}]})
    plays: list[Play] = Field(min_length=1, max_length=MAX_LIST)


class EventsResult(BaseModel):
    user_id: str
    accepted: int
    stored: int = Field(description="plays new to the store (resent timed plays are not stored twice)")
    duplicates: int
    history_length: int


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model_dir": "runs/als"}]})
    model_dir: str | None = Field(None, max_length=4096, description="another model folder under the server's "
                                  "reload root (relative paths are read from there); default the current one")


class Health(BaseModel):
    status: str
    model: str
    version: str
    model_dir: str | None = Field(description="the served folder's name (no path)")
    item_level: str
    n_items: int
    n_users: int
    retrieval: str
    scorer: str = Field("native", description='"native", or the ONNX Runtime network scoring the model')
    accepts_plays: bool = Field(description="posted plays can be stored (a store of the model's catalogue is known)")
    loaded_at: str


# ---------------------------------------------------------------- the model holder
class ServiceHolder:
    """The Service being served. ``reload`` builds the new one completely, then swaps the reference."""

    def __init__(self, model_dir: str, store_url: str | None = None, ann: str = "auto",
                 reload_root: str | None = None, freeze_gc: bool = False):
        self.store_url, self.ann, self.freeze_gc = store_url, ann, freeze_gc     # heap.resettle after a reload
        self._lock = threading.Lock()
        self.service = Service.load(model_dir, store_url=store_url, ann=ann)
        self.reload_root = guards.reload_root(self.service.model_dir, reload_root)

    def reload(self, model_dir: str | None = None) -> Service:
        """The served folder again, or ``model_dir`` (under ``reload_root``; read from there when relative)."""
        target = guards.reload_target(self.reload_root, model_dir) if model_dir is not None else None
        with self._lock:        # one reload at a time; requests keep using the old service meanwhile
            old = self.service
            new = Service.load(target or old.model_dir, store_url=self.store_url, ann=self.ann,
                               overlay=old.events)
            self.service = new
            if self.freeze_gc:
                heap.resettle()
        log.info("serving %s (%s, version %s)", new.model_dir, new.model.name, new.version)
        return new

    def stamp(self) -> tuple:
        """Modification times of the served folder's config.json and bundle.json (written last)."""
        d = self.service.model_dir
        return tuple(os.stat(os.path.join(d, f)).st_mtime_ns if os.path.exists(os.path.join(d, f)) else 0
                     for f in ("config.json", "bundle.json"))


# ---------------------------------------------------------------- errors and middleware
def _error_body(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


async def _send_error(send, code: int, message: str, headers=()) -> None:
    body = json.dumps(_error_body(code, message)).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(StarletteHTTPException):
    pass


class BodyLimitMiddleware:
    """413 for a request body over ``max_bytes``: by its Content-Length, or counted as it streams
    (a chunked body has no length)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = max(self.max_bytes, history_api.HISTORY_BYTES) if scope["path"] == history_api.PATH else self.max_bytes
        message = f"request body larger than {limit} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            return await _send_error(send, 413, message)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPExceptions met while reading the body: the handler answers
                    raise _BodyTooLarge(413, message)
            return msg

        async def tracking_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if started:
                raise
            await _send_error(send, 413, message)


class ApiKeyMiddleware:
    """401 unless the request carries the key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``),
    compared in constant time; ``PUBLIC_PATHS`` need none."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["path"].startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        given = []
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                given.append(value.strip())
            elif name == b"authorization" and value[:7].lower() == b"bearer ":
                given.append(value[7:].strip())
        # compare against every offered key, so timing does not tell which header was checked
        ok = [hmac.compare_digest(g, self.key) for g in given]
        if any(ok):
            return await self.app(scope, receive, send)
        reason = "invalid API key" if given else "missing API key: send Authorization: Bearer KEY or X-API-Key: KEY"
        await _send_error(send, 401, reason, headers=[(b"www-authenticate", b"Bearer")])


def _validation_message(exc: RequestValidationError, example: str | None = None) -> str:
    for err in exc.errors():
        special = body_message(err, example)
        if special:
            return special
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    more = len(exc.errors()) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such path: {request.url.path}"
        return JSONResponse(_error_body(exc.status_code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        example = getattr(request.scope.get("route"), "body_example", None)
        return JSONResponse(_error_body(422, _validation_message(exc, example)), status_code=422)

    @app.exception_handler(MusicrecError)
    async def user_error(request, exc: MusicrecError):
        code = getattr(exc, "status", None) or (404 if isinstance(exc, NotFound) else
                                                503 if isinstance(exc, NoStore) else 422)
        return JSONResponse(_error_body(code, str(exc)), status_code=code)

    @app.exception_handler(Exception)
    async def crash(request, exc: Exception):
        # the traceback goes to the server log only; the client learns nothing about internals
        log.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(_error_body(500, "internal server error"), status_code=500)


# ---------------------------------------------------------------- the app
def create_app(model_dir: str, api_key: str | None = None, store_url: str | None = None,
               max_body_bytes: int = 1_000_000, ann: str = "auto", watch_s: float | None = None,
               allowed_hosts=(), reload_root: str | None = None, fast_routes: bool = True,
               freeze_gc: bool = False) -> FastAPI:
    """The FastAPI app serving the model folder ``model_dir``.

    Parameters
    ----------
    api_key : str, optional
        Required on every non-public path when given.
    store_url : str, optional
        Store that posted plays go to (default: the store of the model's split).
    max_body_bytes : int
        Larger request bodies get 413.
    ann : {"auto", "exact", "hnsw", "ivf"}
        Retrieval index for dot-product models.
    watch_s : float, optional
        Poll the model folder every ``watch_s`` seconds and reload when it changes.
    allowed_hosts : sequence of str
        Host header values accepted besides the loopback names (``guards.allowed_hosts``); "*" for any.
    reload_root : str, optional
        ``/admin/reload`` loads folders under it only (default: the parent of ``model_dir``).
    fast_routes : bool
        Answer plain recommendation requests without FastAPI's routing (``fast_routes``; same bytes).
    freeze_gc : bool
        Freeze the loaded model's objects out of the cycle collector's walks (``heap``; the CLI does).
    """
    hosts = guards.allowed_hosts(allowed_hosts)
    holder = ServiceHolder(model_dir, store_url=store_url, ann=ann, reload_root=reload_root, freeze_gc=freeze_gc)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(_watch(holder, metrics, watch_s)) if watch_s else None
        if freeze_gc:
            heap.settle()
        yield
        if freeze_gc:
            heap.release()
        if task is not None:
            task.cancel()

    app = FastAPI(title="musicrec", version=__version__, lifespan=lifespan, redoc_url=None,
                  description="Music recommendations for listeners, sessions and new listeners, with reasons.")
    app.state.holder = holder
    app.state.metrics = metrics
    _install_error_handlers(app)
    # the documented auth schemes (the middleware enforces them, before any body is read)
    documented = [Security(HTTPBearer(auto_error=False)), Security(APIKeyHeader(name="X-API-Key", auto_error=False))]
    api = APIRouter(dependencies=documented if api_key else [], route_class=JsonBodyRoute,
                    responses=responses.errors(401) if api_key else responses.errors())
    err = responses.errors

    @app.get("/health", response_model=Health, tags=["service"], responses=err())
    def health():
        """Liveness and the model being served."""
        return holder.service.health()

    @api.get("/metrics", tags=["service"], response_class=Response)
    def prometheus_metrics():
        """Prometheus text: requests by route and status, latency histograms, model info."""
        return Response(metrics.render(holder.service), media_type=CONTENT_TYPE_LATEST)

    @api.get("/v1/users/{user_id}/recommendations", response_model=Recommendations, tags=["recommend"],
             responses=err(404, 422))
    async def user_recommendations(
        user_id: Annotated[str, Path(max_length=guards.MAX_NAME_CHARS)],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        exclude_seen: bool = True,
        max_per_artist: Annotated[int | None, Query(ge=1, le=MAX_PER_ARTIST)] = None,
        diversity: Annotated[float | None, Query(ge=0, le=1, allow_inf_nan=False)] = None,
    ):
        """Top k for a listener (their own id or store id), including plays posted since training."""
        svc = holder.service
        items = svc.recommend_user(user_id, k=k, exclude_seen=exclude_seen, max_per_artist=max_per_artist,
                                   diversity=diversity)
        return responses.recommendations(svc.model.name, svc.version, user_id, items)

    @api.post("/v1/recommendations", response_model=Recommendations, tags=["recommend"], responses=err(404, 413, 422))
    async def session_recommendations(body: SessionRequest):
        """The next items for an anonymous listener or a live session (no body fields: popular items)."""
        svc = holder.service
        call = functools.partial(svc.recommend_session, body.recent_plays, body.seed_artists, seed_tags=body.seed_tags,
                                 k=body.k, exclude_seen=body.exclude_seen, max_per_artist=body.max_per_artist,
                                 diversity=body.diversity)
        # a few names resolve in microseconds; many (fuzzy matching) must not hold the event loop
        many = len(body.recent_plays) + len(body.seed_artists) + len(body.seed_tags) > guards.FEW_NAMES
        items = await run_in_threadpool(call) if many else call()
        return responses.recommendations(svc.model.name, svc.version, None, items)

    history_api.add_route(api, holder, ItemCard, err)

    @api.get("/v1/items/{item_id:path}/similar", response_model=SimilarItems, tags=["recommend"], responses=err(404, 422))
    async def similar_items(item_id: Annotated[str, Path(max_length=guards.MAX_NAME_CHARS)],
                            k: Annotated[int, Query(ge=1, le=MAX_K)] = 10):
        """Items most similar to one (store id, source id or name)."""
        svc = holder.service
        item, items = svc.similar(item_id, k=k)
        return responses.similar_items(svc.model.name, svc.version, item, items)

    @api.get("/v1/search", response_model=SearchResults, tags=["recommend"], responses=err(422))
    async def search(q: Annotated[str, Query(min_length=1, max_length=200)],
               limit: Annotated[int, Query(ge=1, le=100)] = 10):
        """Artists (or tracks) by name: "beatles" finds "The Beatles", "bjork" finds "Björk"."""
        return {"query": q, "items": holder.service.search(q, limit=limit)}

    @api.post("/v1/users/{user_id}/events", response_model=EventsResult, tags=["events"],
              responses=err(404, 409, 413, 422, 503))
    def post_events(user_id: Annotated[str, Path(max_length=guards.MAX_NAME_CHARS)], body: EventsRequest):
        """Append plays: stored in the store and reflected in the next recommendations at once."""
        plays = [p.model_dump() for p in body.plays]
        return holder.service.append_events(user_id, plays)

    @api.post("/admin/reload", response_model=Health, tags=["service"], responses=err(403, 404, 413, 422))
    def reload(body: Annotated[ReloadRequest | None, Body()] = None):
        """Load the model folder again (or another one) and swap it in once fully loaded."""
        try:
            svc = holder.reload(body.model_dir if body else None)
        except MusicrecError as exc:    # a message names the folder relative to the root, never its path
            metrics.reloads.labels("failed").inc()
            exc.args = (str(exc).replace(holder.reload_root + os.sep, "").replace(holder.reload_root, "."),)
            raise
        except Exception as exc:   # any failure (a damaged folder, RecursionError, MemoryError): keep the old model
            metrics.reloads.labels("failed").inc()
            log.error("reload failed", exc_info=exc)
            raise MusicrecError(f"could not load the model folder ({type(exc).__name__}); "
                                f"still serving the previous model") from None
        metrics.reloads.labels("ok").inc()
        return svc.health()

    app.include_router(api)
    _mount_web(app)
    # outermost last: metrics see every answer, auth runs before the body is read
    if fast_routes:
        app.add_middleware(FastRoutes, holder=holder, session_model=SessionRequest, max_k=MAX_K,
                           routes=api.routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)
    app.add_middleware(guards.HostAllowList, allowed_hosts=hosts)   # before auth: a foreign page gets nothing
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def _mount_web(app: FastAPI) -> None:
    index = os.path.join(WEB_DIR, "index.html")
    if os.path.isfile(index):
        @app.get("/", include_in_schema=False)
        def web_page():
            return FileResponse(index)

    if os.path.isdir(WEB_DIR):
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")


async def _watch(holder: ServiceHolder, metrics: Metrics, every_s: float) -> None:
    """Reload when the model folder's config.json or bundle.json changes (checked every ``every_s``)."""
    last = holder.stamp()
    while True:
        await asyncio.sleep(every_s)
        try:
            stamp = holder.stamp()
            if stamp == last:
                continue
            await asyncio.sleep(every_s)        # let a writer finish the folder
            last = holder.stamp()
            await run_in_threadpool(holder.reload)
            metrics.reloads.labels("ok").inc()
        except Exception as exc:   # keep serving the old model; try again on the next change
            metrics.reloads.labels("failed").inc()
            log.error("automatic reload failed", exc_info=exc)

