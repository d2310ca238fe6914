"""What every ``*_cmds`` module shares: where data lives, the engine options, the one-line error."""

from __future__ import annotations

import os

import typer

from musicrec import MusicrecError


def data_home() -> str:
    """``$MUSICREC_HOME`` or ``~/.cache/musicrec``."""
    return os.environ.get("MUSICREC_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "musicrec")


def data_mirror() -> str | None:
    """``$MUSICREC_DATA_MIRROR``: a local folder holding dataset copies (one sub-folder per dataset)."""
    return os.environ.get("MUSICREC_DATA_MIRROR") or None


def engine_from_options(engine: str, ray_address: str | None):
    """The engine of ``--engine`` / ``--ray-address`` (MusicrecError for a bad combination)."""
    from musicrec.engine import make_engine

    if engine == "ray":
        return make_engine("ray", address=ray_address)
    if ray_address:
        raise MusicrecError("--ray-address needs --engine ray")
    return make_engine(engine)


def fail(message: str) -> None:
    """Print a one-line error and exit non-zero."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
