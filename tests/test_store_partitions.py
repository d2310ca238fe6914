"""Plays in user-hash buckets: layout, stores written before Delta Lake, engines, chunked ingest."""

import datetime as dt
import json
import os
import shutil
import uuid

import numpy as np
import polars as pl
import pytest

from musicrec import MusicrecError, schema
from musicrec.cli.main import main
from musicrec.engine import LocalEngine
from musicrec.ingest import tabular
from musicrec.ingest.readers import read
from musicrec.store import Store, ingest_path, read_play_partition, user_bucket
from musicrec.store.legacy import bucket_file

NAMES = ("plays", "users", "artists", "tracks", "tags", "friends")


def hetrec(shared_data):
    return os.path.join(shared_data, "hetrec2011-lastfm-2k")


def slice30(shared_data, i=1):
    return os.path.join(shared_data, "30music-200ks-test-slices", f"30music-200ks_test.{i}.txt")


def assert_same_store(a: Store, b: Store):
    for name in NAMES:
        assert a.table(name).equals(b.table(name)), name


def same_report(r1, r2):
    return (r1.plays_added, r1.plays_duplicate, r1.rejected, r1.counts, r1.added, r1.skipped) == \
        (r2.plays_added, r2.plays_duplicate, r2.rejected, r2.counts, r2.added, r2.skipped)


# ---- the bucket function and the layout ---------------------------------------------------------

def splitmix64_reference(x: int) -> int:
    m = (1 << 64) - 1
    x &= m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def test_user_bucket_is_splitmix64_mod_n():
    ids = [0, 1, 2, 7, 1_000_003, 2**40 + 5, 2**63 - 1, -1, -12345]
    for n in (1, 3, 16, 64):
        got = user_bucket(np.array(ids, dtype=np.int64), n)
        assert got.tolist() == [splitmix64_reference(i) % n for i in ids]
    spread = np.bincount(user_bucket(np.arange(10_000), 16), minlength=16)
    assert spread.min() > 500                      # consecutive ids spread over every bucket
    assert user_bucket(pl.Series([None, 0], dtype=pl.Int64), 16)[0] == user_bucket(np.array([0]), 16)[0]


@pytest.fixture(scope="module")
def hetrec_store(shared_data, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("het") / "store")
    report = ingest_path("hetrec-lastfm-2k", hetrec(shared_data), store, partitions=5)
    return store, report


def test_every_user_is_in_exactly_the_bucket_of_its_hash(hetrec_store):
    store, report = hetrec_store
    s = Store(store)
    m = s.manifest()
    assert m["schema_version"] == 3 and m["plays_layout"]["buckets"] == 5 and s.n_buckets == 5
    assert sorted(os.listdir(os.path.join(store, "plays"))) == ["_delta_log"] + [f"bucket={b}" for b in range(5)]
    parts = s.play_partitions()
    assert [p.rsplit("&", 1)[1] for p in parts] == [f"bucket={b}" for b in range(5)]
    seen = {}
    total = 0
    for b, url in enumerate(parts):
        df = read_play_partition(url)
        total += df.height
        assert df.height > 0 and df.schema == pl.Schema(schema.STORE_PLAYS)
        assert (user_bucket(df["user_id"], 5) == b).all()
        assert df.equals(df.sort("user_id", "timestamp", nulls_last=False, maintain_order=True))
        for u in df["user_id"].unique().to_list():
            assert u not in seen
            seen[u] = b
    assert total == report.counts["plays"] == 92_834 == m["tables"]["plays"]
    assert len(seen) == s.table("plays")["user_id"].n_unique()
    assert read_play_partition(parts[0], columns=["user_id", "play_count"]).columns == ["user_id", "play_count"]


def test_table_and_scan_give_the_canonical_order(hetrec_store):
    s = Store(hetrec_store[0])
    plays = s.table("plays")
    assert plays.equals(plays.sort("user_id", "timestamp", nulls_last=False, maintain_order=True))
    assert s.scan("plays").collect().equals(plays)
    unordered = s.scan("plays", ordered=False).collect()
    assert unordered.height == plays.height and not unordered.equals(plays)   # bucket order
    assert s.scan("plays").filter(pl.col("user_id") == 2).collect().equals(plays.filter(pl.col("user_id") == 2))


def test_bucket_count_does_not_change_the_contents(shared_data, tmp_path, hetrec_store):
    one = str(tmp_path / "one")
    ingest_path("hetrec-lastfm-2k", hetrec(shared_data), one, partitions=1)
    r1 = ingest_path("30music", slice30(shared_data), one)
    five = str(tmp_path / "five")
    shutil.copytree(hetrec_store[0], five)
    r5 = ingest_path("30music", slice30(shared_data), five)
    assert same_report(r1, r5)
    assert_same_store(Store(one), Store(five))
    # one bucket is the whole table, in the canonical order
    assert read_play_partition(Store(one).play_partitions()[0]).equals(Store(one).table("plays"))
    with pytest.raises(MusicrecError, match="has 5 plays partitions"):
        ingest_path("30music", slice30(shared_data), five, partitions=8)
    with pytest.raises(MusicrecError, match="positive integer"):
        ingest_path("30music", slice30(shared_data), str(tmp_path / "bad"), partitions=0)


# ---- stores written before Delta Lake ------------------------------------------------------------

def make_legacy_store(delta_store: str, path: str, version: int) -> None:
    """Write ``delta_store``'s rows in the layout of schema ``version`` (1: one ``plays.parquet``; 2:
    ``plays/part-NNNN.parquet`` buckets) with a ``manifest.json``, as musicrec wrote before Delta."""
    s = Store(delta_store)
    os.makedirs(path)
    for name in NAMES[1:]:
        s.table(name).write_parquet(os.path.join(path, f"{name}.parquet"))
    m = s.manifest()
    manifest = {"schema_version": version, "tables": m["tables"], "sources": m["sources"]}
    if version == 1:
        s.table("plays").write_parquet(os.path.join(path, "plays.parquet"))
    else:
        os.makedirs(os.path.join(path, "plays"))
        for b, part in enumerate(s.play_partitions()):
            read_play_partition(part).write_parquet(os.path.join(path, "plays", bucket_file(b)))
        manifest["plays_layout"] = {"buckets": s.n_buckets}
    json.dump(manifest, open(os.path.join(path, "manifest.json"), "w"))


@pytest.mark.parametrize("version", [1, 2])
def test_legacy_store_is_read_as_it_is_and_migrated(shared_data, tmp_path, version):
    made, legacy, fresh = str(tmp_path / "made"), str(tmp_path / "legacy"), str(tmp_path / "fresh")
    ingest_path("30music", slice30(shared_data, 1), made, partitions=1 if version == 1 else 4)
    make_legacy_store(made, legacy, version)
    s = Store(legacy)
    assert s.format == "legacy" and s.exists()
    assert_same_store(s, Store(made))
    assert s.n_buckets == (None if version == 1 else 4)
    # an ingest moves it into Delta tables first (1 bucket for a single-file store)
    r_legacy = ingest_path("30music", slice30(shared_data, 2), legacy)
    r_fresh = ingest_path("30music", slice30(shared_data, 2), made)
    assert same_report(r_legacy, r_fresh)
    assert_same_store(s, Store(made))
    assert s.format == "delta" and s.n_buckets == (16 if version == 1 else 4)
    assert [e["source"] for e in s.manifest()["sources"]] == ["30music", "30music"]
    assert not os.path.exists(os.path.join(legacy, "manifest.json"))
    assert not os.path.exists(os.path.join(legacy, "plays.parquet"))
    assert not [f for f in os.listdir(os.path.join(legacy, "plays")) if f.endswith(".parquet")]
    assert not os.path.exists(os.path.join(legacy, "_staging"))


def test_migrate_command(shared_data, tmp_path, capsys):
    made, legacy = str(tmp_path / "made"), str(tmp_path / "legacy")
    ingest_path("30music", slice30(shared_data, 1), made, partitions=3)
    make_legacy_store(made, legacy, 2)
    for expect in ("migrated", "already"):
        with pytest.raises(SystemExit) as exc:
            main(["store", "migrate", legacy])
        out = capsys.readouterr().out
        assert exc.value.code in (0, None) and expect in out, out
    assert_same_store(Store(legacy), Store(made))


# ---- engines --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_engine():
    pytest.importorskip("ray")
    from musicrec.engine import RayEngine

    engine = RayEngine(num_cpus=2)
    yield engine
    engine.close()


def test_ray_and_local_engines_write_the_same_store(shared_data, tmp_path, ray_engine, capsys):
    stores = {"local": str(tmp_path / "local"), "ray": str(tmp_path / "ray")}
    reports = {}
    for name, engine in (("local", LocalEngine()), ("ray", ray_engine)):
        reports[name] = [ingest_path("hetrec-lastfm-2k", hetrec(shared_data), stores[name], engine=engine,
                                     partitions=4),
                         ingest_path("30music", slice30(shared_data), stores[name], engine=engine)]
    for a, b in zip(reports["local"], reports["ray"]):
        assert same_report(a, b)
    assert_same_store(Store(stores["local"]), Store(stores["ray"]))
    for a, b in zip(Store(stores["local"]).play_partitions(), Store(stores["ray"]).play_partitions()):
        assert read_play_partition(a).equals(read_play_partition(b))
    # the CLI joins the running Ray instance; re-ingesting adds nothing
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "30music", slice30(shared_data), "--store", stores["ray"], "--engine", "ray"])
    out = capsys.readouterr().out
    assert exc.value.code in (0, None), out
    assert "plays: 0 added" in out
    assert_same_store(Store(stores["local"]), Store(stores["ray"]))


def test_memory_store_is_refused():
    s = Store(f"memory://store-{uuid.uuid4().hex}")
    with pytest.raises(MusicrecError, match="memory:// cannot hold"):
        s.ingest(_toy_tables())
    assert not s.exists()


# ---- chunked ingest --------------------------------------------------------------------------------

def _toy_tables():
    from musicrec.ingest.base import SourceTables

    return SourceTables("toy", pl.DataFrame({"user_key": ["u"], "artist_key": ["a"]}))


def synthetic_log(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    users = rng.integers(0, 60, n)
    artists = rng.integers(0, 40, n)
    return pl.DataFrame({
        "user": [f"listener{u}" for u in users],
        "artist": [f"band{a}" for a in artists],
        "track": [f"song{a}-{t}" for a, t in zip(artists, rng.integers(0, 5, n))],
        "timestamp": [(t0 + dt.timedelta(seconds=int(s))).isoformat() for s in rng.integers(0, 3600 * 24, n)],
        "ms_played": [str(v) for v in rng.integers(0, 300_000, n)],
    })


def write_inputs(folder, fmt):
    """Three files (one with 2,500 rows) with repeats across files and a few bad rows."""
    os.makedirs(folder)
    a, b, c = synthetic_log(2500, 1), synthetic_log(400, 2), synthetic_log(300, 3)
    b = pl.concat([b, a.slice(100, 50)])                          # overlap: duplicates of file a
    bad = {5: ("timestamp", "yesterday"), 1700: ("ms_played", "-3"), 2200: ("user", "")}
    a = a.with_row_index("_i").with_columns([
        pl.when(pl.col("_i") == i).then(pl.lit(v)).otherwise(pl.col(col)).alias(col) for i, (col, v) in bad.items()
    ]).drop("_i")
    for name, df in (("a", a), ("b", b), ("c", c)):
        if fmt == "parquet":
            df.write_parquet(os.path.join(folder, f"{name}.parquet"))
        else:
            df.write_csv(os.path.join(folder, f"{name}.csv"), quote_style="always" if name == "c" else "necessary")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunked_ingest_equals_one_shot_ingest(tmp_path, monkeypatch, fmt):
    folder = str(tmp_path / "in")
    write_inputs(folder, fmt)
    one_shot, chunked = Store(str(tmp_path / "one")), str(tmp_path / "chunked")
    r1 = one_shot.ingest(read(fmt, folder), partitions=3)
    monkeypatch.setattr(tabular, "CHUNK_ROWS", 1000)               # a.parquet comes in 3 chunks
    monkeypatch.setattr("musicrec.store.incoming.SPILL_ROWS", 600)           # and plays go through staged files
    monkeypatch.setattr("musicrec.store.incoming.REDUCE_ROWS", 50)           # entity keys folded between chunks
    chunks = list(tabular.iter_tabular(folder, fmt))
    assert len(chunks) == (5 if fmt == "parquet" else 3)
    r2 = ingest_path(fmt, folder, chunked, partitions=3)
    # repeats inside one ingest are kept as listens; only stored plays make duplicates
    assert same_report(r1, r2) and r1.rejected == 3
    assert (r1.plays_added, r1.plays_duplicate) == (2500 + 450 + 300 - 3, 0)
    assert_same_store(one_shot, Store(chunked))
    rej1, rej2 = (pl.read_csv(r.rejects_path) for r in (r1, r2))
    assert rej1.equals(rej2)
    assert sorted(rej1["record"].to_list()) == ([6, 1701, 2201] if fmt == "parquet" else [7, 1702, 2202])
    m1, m2 = one_shot.manifest()["sources"][0], Store(chunked).manifest()["sources"][0]
    assert m1["files"] == m2["files"] and len(m1["files"]) == 3
    r3 = ingest_path(fmt, folder, chunked)                            # idempotent in chunks too
    assert (r3.plays_added, r3.plays_duplicate) == (0, r1.plays_added + r1.plays_duplicate)
    assert not os.path.exists(os.path.join(chunked, "_staging"))


def test_chunked_reader_error_leaves_the_store_untouched(tmp_path, shared_data):
    store = str(tmp_path / "s")
    ingest_path("30music", slice30(shared_data), store, partitions=2)
    before = {n: Store(store).table(n) for n in NAMES}
    folder = tmp_path / "in"
    folder.mkdir()
    pl.DataFrame({"user": ["x"], "artist": ["y"]}).write_parquet(folder / "a.parquet")
    pl.DataFrame({"listener": ["x"]}).write_parquet(folder / "b.parquet")       # no user column
    with pytest.raises(MusicrecError, match="no user column"):
        ingest_path("parquet", str(folder), store)
    for n in NAMES:
        assert Store(store).table(n).equals(before[n])
    assert not os.path.exists(os.path.join(store, "_staging"))


def test_cli_partitions_and_engine_options(shared_data, tmp_path, capsys):
    store = str(tmp_path / "s")

    def run(*extra):
        with pytest.raises(SystemExit) as exc:
            main(["ingest", "30music", slice30(shared_data), "--store", store, *extra])
        out = capsys.readouterr()
        return exc.value.code or 0, out.out, out.err

    code, out, err = run("--partitions", "3")
    assert code == 0 and "plays: 21,021 added" in out, err
    assert Store(store).n_buckets == 3 and len(os.listdir(os.path.join(store, "plays"))) == 3 + 1  # + _delta_log
    for extra, message in ((("--partitions", "4"), "has 3 plays partitions"),
                           (("--engine", "spark"), "unknown engine 'spark'"),
                           (("--ray-address", "auto"), "--ray-address needs --engine ray")):
        code, out, err = run(*extra)
        assert code != 0 and message in err and "Traceback" not in err
    assert Store(store).manifest()["tables"]["plays"] == 21_021
