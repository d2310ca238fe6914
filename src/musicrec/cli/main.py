"""``musicrec`` entry point. Each ``*_cmds`` module registers its commands on ``app``.

Heavy libraries are imported inside commands so ``musicrec --help`` stays instant.
"""

from __future__ import annotations

import sys

import typer

from musicrec import MusicrecError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Music recommendation from raw listening logs.")


_REGISTERED = False


def _register() -> None:
    """Add every module's commands to ``app`` (once: tests and ``main`` may both call it)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    from musicrec.cli import audio_cmds, compress_cmds, data_cmds, model_cmds, serve_cmds, split_cmds

    for module in (data_cmds, split_cmds, model_cmds, serve_cmds, audio_cmds, compress_cmds):
        module.register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except MusicrecError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
