"""A direct path for the two busiest requests, in front of FastAPI (used by ``musicrec.serve.app``).

FastAPI's routing, dependency solving and parameter validation cost about 0.4 ms a request on
these cores, as much as scoring a listener with most models, so at 500 requests/s they decide
the latency tail (benchmarks/serve_load.py). This ASGI layer sits inside the app's middlewares
(metrics, Host allow-list, API key and body limit have all run) and answers itself only
requests whose every parameter it can check exactly as FastAPI would:

* ``GET /v1/users/{user_id}/recommendations`` with no query or only ``k=<1..MAX_K>``;
* ``POST /v1/recommendations`` with a JSON object body that ``SessionRequest`` accepts and few
  enough names to answer on the event loop (``guards.FEW_NAMES``).

Anything else, and any request whose answer raises (an unknown listener, a bad name), goes to
FastAPI unchanged, with the body it already read replayed, so error answers, their messages and
their metrics are FastAPI's. The answer is the route's own ``responses.recommendations`` bytes,
and ``scope["route"]`` is set to the route matched, so metrics label it the same.
"""

from __future__ import annotations

import json
import re

from musicrec.serve import guards, responses

USER_PREFIX, USER_SUFFIX = "/v1/users/", "/recommendations"
SESSION_PATH = "/v1/recommendations"
_K_QUERY = re.compile(rb"(?:k=([1-9][0-9]{0,3}))?")


class FastRoutes:
    """ASGI layer answering plain recommendation requests without FastAPI (see the module)."""

    def __init__(self, app, holder, session_model, max_k: int, routes):
        self.app = app
        self.holder = holder
        self.session_model = session_model
        self.max_k = max_k
        self.routes = {r.path: r for r in routes if hasattr(r, "path")}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if method == "GET" and path.startswith(USER_PREFIX) and path.endswith(USER_SUFFIX):
                if await self._user(scope, receive, send, path[len(USER_PREFIX):-len(USER_SUFFIX)]):
                    return
            elif method == "POST" and path == SESSION_PATH:
                return await self._session(scope, receive, send)
        await self.app(scope, receive, send)

    async def _user(self, scope, receive, send, user_id: str) -> bool:
        match = _K_QUERY.fullmatch(scope["query_string"])
        if not user_id or "/" in user_id or len(user_id) > guards.MAX_NAME_CHARS or match is None:
            return False
        k = int(match.group(1) or 10)
        if k > self.max_k:
            return False
        svc = self.holder.service
        try:
            items = svc.recommend_user(user_id, k=k)
            answer = responses.recommendations(svc.model.name, svc.version, user_id, items)
        except Exception:   # noqa: BLE001 - FastAPI answers it again, with its own error handling
            return False
        scope["route"] = self.routes.get("/v1/users/{user_id}/recommendations")
        await answer(scope, receive, send)
        return True

    async def _session(self, scope, receive, send):
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":      # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        answer = self._session_answer(body)
        if answer is None:
            return await self.app(scope, _replay(body, receive), send)
        scope["route"] = self.routes.get(SESSION_PATH)
        await answer(scope, receive, send)

    def _session_answer(self, body: bytes):
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                return None
            req = self.session_model.model_validate(data)
        except Exception:   # noqa: BLE001 - not JSON, or invalid: FastAPI's message
            return None
        if len(req.recent_plays) + len(req.seed_artists) + len(req.seed_tags) > guards.FEW_NAMES:
            return None     # fuzzy matching of many names: FastAPI's route runs it in the thread pool
        svc = self.holder.service
        try:
            items = svc.recommend_session(req.recent_plays, req.seed_artists, seed_tags=req.seed_tags, k=req.k,
                                          exclude_seen=req.exclude_seen, max_per_artist=req.max_per_artist,
                                          diversity=req.diversity)
            return responses.recommendations(svc.model.name, svc.version, None, items)
        except Exception:   # noqa: BLE001 - an unknown name, a bug: FastAPI answers it again
            return None


def _replay(body: bytes, receive):
    """A ``receive`` that gives ``body`` once, then whatever the connection says next."""
    done = False

    async def replay():
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
