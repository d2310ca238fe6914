"""Shared by the CLI tests: run the CLI in-process, and write a small store by hand."""

import json

import polars as pl
import pytest

from musicrec import schema
from musicrec.cli.main import main


def run(argv, capsys):
    """(exit code, stdout, stderr) of ``musicrec ARGV`` run in this process."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def write_store(path, plays, users, artists, tracks) -> str:
    """A version-1 store folder at ``path`` from the four tables (frames or lists of row dicts)."""
    path.mkdir()
    tables = {"plays": plays, "users": users, "artists": artists, "tracks": tracks}
    for name, df in tables.items():
        schema.conform(pl.DataFrame(df), getattr(schema, f"STORE_{name.upper()}")).write_parquet(path / f"{name}.parquet")
    (path / "manifest.json").write_text(json.dumps({"schema_version": 1, "tables": {}, "sources": []}))
    return str(path)
