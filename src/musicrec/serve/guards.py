"""What one request may ask of the server (used by ``musicrec.serve.app``).

- **Names per request**: at most ``MAX_NAMES`` ids or names in ``recent_plays`` / ``seed_artists`` (and
  plays per post), each at most ``MAX_NAME_CHARS`` characters; a request with more than ``FEW_NAMES``
  names is resolved in the thread pool, so fuzzy matching never holds the event loop (``/health``
  answers meanwhile).
- **Numbers** in a body are JSON numbers: not booleans or numeric strings (``json_number``).
- **Timestamps**: one range for ISO strings and Unix seconds, the ingest readers' own:
  [1970-01-01, 2100-01-01) UTC (``musicrec.ingest.base.MAX_EPOCH_S``). A number is always seconds
  (pydantic would read one above 2e10 as milliseconds).
- **Hosts**: the ``Host`` header must name this server (loopback names by default), so a page on
  another site cannot reach the API through DNS rebinding (Starlette's ``TrustedHostMiddleware``).
- **Reloads**: ``/admin/reload`` loads only folders under a root fixed at start-up, never a URL, and
  says nothing about folders outside it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os

from starlette.middleware.trustedhost import TrustedHostMiddleware

from musicrec import MusicrecError
from musicrec.ingest.base import MAX_EPOCH_S

MAX_NAMES = 200                 # ids or names in one list of a request body
MAX_NAME_CHARS = 300            # characters in one id or name
FEW_NAMES = 8                   # more names than this in one request: resolved in the thread pool
MAX_MS_PLAYED = 2**63 - 1       # int64, the store's column type

MIN_EPOCH_S = 0
TIME_MIN = dt.datetime.fromtimestamp(MIN_EPOCH_S, dt.timezone.utc)
TIME_MAX = dt.datetime.fromtimestamp(MAX_EPOCH_S, dt.timezone.utc)
TIME_RANGE = f"{TIME_MIN:%Y-%m-%d} to before {TIME_MAX:%Y-%m-%d} (UTC)"

#: the names a loopback server answers to; a port after any of them is fine
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})


class Forbidden(MusicrecError):
    """A request the server refuses whatever its body (HTTP 403)."""

    status = 403


class Conflict(MusicrecError):
    """A request that does not fit the server's state (HTTP 409)."""

    status = 409


# ---------------------------------------------------------------- numbers
def json_number(value):
    """Pydantic before-validator of a number in a JSON body: a JSON number only (or null where the field
    allows it). Pydantic's lax mode would read ``true`` as 1 and ``"10"`` as 10, which the documented
    schema refuses (found by the API fuzz run); ``10.0`` stays a valid integer, as in JSON Schema."""
    if isinstance(value, (bool, str)):
        raise ValueError("must be a JSON number")
    return value


# ---------------------------------------------------------------- timestamps
def timestamp_before(value):
    """Pydantic before-validator of a play's ``timestamp``: a number (or numeric string) is Unix
    seconds within ``TIME_RANGE``, turned into a UTC datetime; anything else goes on to the
    datetime parser."""
    if isinstance(value, bool):
        raise ValueError("a timestamp is an ISO 8601 string or Unix seconds, not a boolean")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if value.strip() else value
        except ValueError:
            return value            # ISO 8601, checked after parsing
    if isinstance(value, (int, float)):
        if not (isinstance(value, int) or math.isfinite(value)) or not MIN_EPOCH_S <= value < MAX_EPOCH_S:
            raise ValueError(f"Unix seconds must be from {MIN_EPOCH_S} to before {MAX_EPOCH_S} ({TIME_RANGE})")
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=float(value))
    return value


def timestamp_after(value: dt.datetime | None) -> dt.datetime | None:
    """Pydantic after-validator: the time in UTC (no zone = UTC), within ``TIME_RANGE``."""
    if value is None:
        return None
    try:
        utc = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):     # e.g. 0001-01-01T00:00+05:00 has no UTC time
        utc = None
    if utc is None or not TIME_MIN <= utc < TIME_MAX:
        raise ValueError(f"timestamp must be from {TIME_RANGE}")
    return utc


# ---------------------------------------------------------------- hosts
def allowed_hosts(extra=()) -> list[str]:
    """The Host names to accept: the loopback names and ``extra`` (an IPv6 address also in brackets)."""
    hosts = list(LOOPBACK_HOSTS)
    for name in extra or ():
        name = str(name).strip().lower()
        if not name or ("*" in name[1:]) or (name.startswith("*") and name != "*" and not name.startswith("*.")):
            raise MusicrecError(f"--allowed-host {name!r}: give a host name, an address, '*.example.com' or '*'")
        hosts.append(name)
        if name.count(":") > 1 and not name.startswith("["):        # an IPv6 address
            hosts.append(f"[{name}]")
    return list(dict.fromkeys(hosts))


def bind_hosts(host: str) -> list[str]:
    """``[host]`` when the server binds one address or name, ``[]`` for a wildcard (every address)."""
    return [] if host.strip().lower() in WILDCARD_BINDS else [host.strip()]


class HostAllowList(TrustedHostMiddleware):
    """``TrustedHostMiddleware`` answering a foreign ``Host`` with this API's JSON error (400)."""

    def __init__(self, app, allowed_hosts: list[str]):
        async def allowed(scope, receive, send):
            scope["musicrec.host_ok"] = True
            await app(scope, receive, send)

        super().__init__(allowed, allowed_hosts=allowed_hosts, www_redirect=False)
        self.message = ("the Host header names no address this server answers to; start it with "
                        "--allowed-host NAME to add one")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)

        async def guarded_send(msg):
            if scope.get("musicrec.host_ok"):
                return await send(msg)
            if msg["type"] == "http.response.start":      # the middleware's own plain-text 400
                body = json.dumps({"error": {"code": 400, "message": self.message}}).encode()
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

        await super().__call__(scope, receive, guarded_send)


# ---------------------------------------------------------------- reloads
def reload_root(model_dir: str, root: str | None = None) -> str:
    """The folder ``/admin/reload`` may load from: ``root``, default the served folder's parent."""
    if root is not None and "://" in root:
        raise MusicrecError(f"--reload-root {root}: give a local folder")
    path = os.path.realpath(root if root is not None else os.path.dirname(os.path.abspath(model_dir)))
    if not os.path.isdir(path):
        raise MusicrecError(f"--reload-root {root}: no such folder")
    return path


def reload_target(root: str, model_dir: str) -> str:
    """The real path of ``model_dir`` (relative paths are read from ``root``) when it lies under
    ``root``; Forbidden otherwise, with the same message whether or not such a folder exists."""
    refuse = Forbidden("model_dir must be a model folder under the server's reload root "
                       "(see `musicrec serve --reload-root`); URLs are not fetched")
    if not isinstance(model_dir, str) or "://" in model_dir or "\x00" in model_dir:
        raise refuse
    path = os.path.realpath(os.path.join(root, model_dir))
    if os.path.commonpath([root, path]) != root:
        raise refuse
    return path
