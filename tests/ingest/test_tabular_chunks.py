"""Chunked reading of big CSV and Parquet files gives what reading them whole gives."""

import numpy as np
import polars as pl
import pytest

from musicrec.ingest import tabular
from musicrec.ingest.base import concat_tables


def rows(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"u{rng.integers(0, 30)},artist {rng.integers(0, 20)},t{rng.integers(0, 90)},"
            f"{1_700_000_000 + int(rng.integers(0, 10**6))},{rng.integers(0, 300_000)}" for _ in range(n)]


def big_csv(path, quoted_tail: bool, crlf: bool = False) -> None:
    lines = ["user,artist,track,timestamp,ms_played"] + rows(3000, 0)
    lines[10] = "u1,artist 1,t1,not-a-time,5"                  # bad timestamp
    lines[1200] = ""                                            # blank line
    lines[1500] = "u2,artist 2,t2,1700000000"                   # too few fields
    lines[2100] = "u3,artist 3,t3,1700000000,-1"                # bad ms_played
    body = [line.encode() for line in lines]
    body[2500] = b"u4,artist \xff\xfe,t4,1700000000,1"          # undecodable bytes
    if quoted_tail:
        body[2700] = b'u5,"artist, with comma",t5,1700000000,7'
        body[2800] = b'u6,"artist with\nline break",t6,1700000000,8'
    eol = b"\r\n" if crlf else b"\n"
    path.write_bytes(b"\xef\xbb\xbf" + eol.join(body) + eol)


@pytest.mark.parametrize("quoted_tail,crlf", [(False, False), (True, False), (False, True)])
def test_big_csv_in_blocks_equals_one_read(tmp_path, monkeypatch, quoted_tail, crlf):
    path = tmp_path / "log.csv"
    big_csv(path, quoted_tail, crlf)
    whole = tabular.read_csv(path)
    assert len(list(tabular.iter_csv(path))) == 1
    monkeypatch.setattr(tabular, "CSV_CHUNK_BYTES", 9_000)        # about 200 lines a block
    monkeypatch.setattr(tabular, "QUOTED_CHUNK_ROWS", 64)
    chunks = list(tabular.iter_csv(path))
    assert len(chunks) > 5
    parts = concat_tables(chunks)
    for name in ("plays", "artists", "tracks", "users"):
        assert getattr(parts, name).equals(getattr(whole, name)), name
    rej = parts.rejects.frame().sort("record")
    assert rej.equals(whole.rejects.frame().sort("record"))
    assert rej["record"].to_list() == [i + 1 for i in (10, 1500, 2100, 2500)]   # lines[0], the header, is line 1
    if quoted_tail:
        names = whole.artists["name"].to_list()
        assert "artist, with comma" in names and "artist with\nline break" in names
        # the record after the two-line field keeps its physical line number
        records = whole.plays["source_row"].to_list()
        assert 2801 in records and 2802 not in records and 2803 in records


def test_big_parquet_in_slices_equals_one_read(tmp_path, monkeypatch):
    path = tmp_path / "log.parquet"
    df = pl.read_csv("\n".join(["user,artist,track,timestamp,ms_played"] + rows(2500, 1)).encode(),
                     schema_overrides={"ms_played": pl.Int64})
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 1234).then(-5).otherwise(pl.col("ms_played"))
                         .alias("ms_played"))
    df.write_parquet(path, row_group_size=700)
    whole = tabular.read_parquet(path)
    monkeypatch.setattr(tabular, "CHUNK_ROWS", 600)
    chunks = list(tabular.iter_parquet(path))
    assert len(chunks) >= 5
    parts = concat_tables(chunks)
    for name in ("plays", "artists", "tracks", "users"):
        assert getattr(parts, name).equals(getattr(whole, name)), name
    assert parts.rejects.rows == whole.rejects.rows and [r["record"] for r in whole.rejects.rows] == [1235]
    assert whole.rejects.rows[0]["raw"].endswith(",-5")
