"""``musicrec serve``: the HTTP API and the web page for one model folder (uvicorn)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from typing import Optional

import typer

from musicrec import MusicrecError

OPTIONS_ENV = "MUSICREC_SERVE_OPTIONS"
MIN_KEY_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:      # a host name: it may resolve to any interface
        return False


def read_api_key(path: str) -> str:
    """The key in file ``path`` (surrounding whitespace dropped); MusicrecError when unreadable, not one
    word, or shorter than ``MIN_KEY_CHARS`` characters."""
    try:
        with open(path, encoding="utf-8") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise MusicrecError(f"cannot read the API key file {path}: {exc.strerror}") from None
    if not key or any(ch.isspace() for ch in key):
        raise MusicrecError(f"{path}: the API key must be one non-empty word")
    if len(key) < MIN_KEY_CHARS:
        raise MusicrecError(f"{path}: the API key has {len(key)} characters; use at least {MIN_KEY_CHARS} "
                            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return key


def app_from_env():
    """App factory for uvicorn's worker processes: create_app's options from $MUSICREC_SERVE_OPTIONS."""
    from musicrec.serve.app import create_app

    options = json.loads(os.environ[OPTIONS_ENV])
    key_file = options.pop("api_key_file", None)
    return create_app(api_key=read_api_key(key_file) if key_file else None, **options)


def limit_threads(n: int) -> None:
    """Cap BLAS, torch and FAISS at ``n`` threads each (worker processes inherit the env vars)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # pragma: no cover
        pass


def local_copy(url: str) -> str:
    """Download the model folder at an fsspec URL into the data home and return the local folder
    (the server memory-maps and re-reads its files, which object stores cannot do in place)."""
    import hashlib

    from musicrec import fsio
    from musicrec.cli.common import data_home

    if not fsio.isfile(fsio.join(url, "config.json")):
        raise MusicrecError(f"{url}: not a model directory (no config.json)")
    local = os.path.join(data_home(), "served", hashlib.sha256(url.encode()).hexdigest()[:16])
    tmp = f"{local}.tmp-{os.getpid()}"
    fs, path = fsio.filesystem(url)
    fs.get(path.rstrip("/") + "/", tmp + "/", recursive=True)
    if os.path.isdir(local):
        shutil.rmtree(local)
    os.replace(tmp, local)
    return local


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model_dir: str = typer.Argument(..., help="model folder from `musicrec train`"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind"),
        port: int = typer.Option(8000, "--port"),
        api_key_file: Optional[str] = typer.Option(None, "--api-key-file",
                                                   help="file holding the API key clients must send"),
        store: Optional[str] = typer.Option(None, "--store", help="store for posted plays (default: the split's)"),
        ann: str = typer.Option("auto", "--ann", help="retrieval index: auto (exact while the item vectors hold at most 6.4M numbers, e.g. 100k x 64), exact, hnsw, ivf"),
        workers: int = typer.Option(1, "--workers", help="processes; posted plays show at once only in the "
                                                         "process that received them (keep 1 for live sessions)"),
        watch: float = typer.Option(0.0, "--watch", help="reload when MODEL_DIR changes, checked every N seconds (0 = off)"),
        max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="larger request bodies get 413"),
        graceful_timeout: float = typer.Option(10.0, "--graceful-timeout",
                                               help="seconds to finish in-flight requests on shutdown"),
        insecure_no_auth: bool = typer.Option(False, "--insecure-no-auth",
                                              help="allow a non-loopback --host without an API key"),
        threads: int = typer.Option(1, "--threads", help="BLAS/torch/FAISS threads per request (requests already "
                                                         "run in parallel; more threads oversubscribe the cores)"),
        access_log: bool = typer.Option(True, "--access-log/--no-access-log", help="log every request"),
        allowed_host: Optional[list[str]] = typer.Option(None, "--allowed-host",
                                                         help="Host header to accept besides loopback names and "
                                                              "--host (repeatable; '*.example.com' or '*' for any)"),
        reload_root: Optional[str] = typer.Option(None, "--reload-root",
                                                  help="POST /admin/reload loads folders under DIR only "
                                                       "(default: the parent of MODEL_DIR)"),
    ):
        """Serve a model over HTTP: recommendations, similar items, search, new plays; web page at /."""
        from musicrec.serve.retrieval import MODES

        if ann not in MODES:
            raise MusicrecError(f"--ann must be one of {', '.join(MODES)}, got {ann!r}")
        if workers < 1 or threads < 1 or not 0 < port < 65536 or max_body_bytes < 1 or watch < 0:
            raise MusicrecError("--workers, --threads and --max-body-bytes must be >= 1, --port in 1..65535, "
                                "--watch >= 0")
        key = read_api_key(api_key_file) if api_key_file else None
        if key is None and not is_loopback(host) and not insecure_no_auth:
            raise MusicrecError(f"refusing to serve on {host} without an API key: give --api-key-file FILE "
                                f"(or --insecure-no-auth to serve openly)")
        import uvicorn

        limit_threads(threads)
        if "://" in model_dir:
            if watch:
                raise MusicrecError("--watch needs a local model folder; copy the remote one and watch that")
            model_dir = local_copy(model_dir)

        from musicrec.serve import guards

        # bad names or folders are one-line errors before anything loads
        hosts = [*(allowed_host or []), *guards.bind_hosts(host)]
        guards.allowed_hosts(hosts)
        guards.reload_root(model_dir, reload_root)
        options = dict(model_dir=os.path.abspath(model_dir), store_url=store, ann=ann,
                       max_body_bytes=max_body_bytes, watch_s=watch or None, allowed_hosts=hosts,
                       reload_root=os.path.abspath(reload_root) if reload_root else None, freeze_gc=True)
        common = dict(host=host, port=port, timeout_graceful_shutdown=graceful_timeout, log_level="info",
                      access_log=access_log)
        if workers == 1:
            from musicrec.serve.app import create_app

            # built before binding, so a bad folder is a one-line error, not a crashed worker
            uvicorn.run(create_app(api_key=key, **options), **common)
            return
        from musicrec.models.base import read_config

        read_config(model_dir)
        # the key stays in its file: only the path travels to the workers
        os.environ[OPTIONS_ENV] = json.dumps({**options, "api_key_file": os.path.abspath(api_key_file)
                                              if api_key_file else None})
        uvicorn.run("musicrec.cli.serve_cmds:app_from_env", factory=True, workers=workers, **common)
