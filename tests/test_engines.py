"""The shared-data pipeline gives the same store and split, row for row, on the local engine and
on Ray (a local Ray instance with 2 CPUs, started once for the module)."""

import os

import pytest

ray = pytest.importorskip("ray")

from musicrec.engine import LocalEngine, RayEngine  # noqa: E402
from musicrec.preprocess.split import make_split  # noqa: E402
from musicrec.store import TABLES, Store, ingest_path  # noqa: E402

CASES = {
    # HetRec counts (artist level, no timestamps), user-holdout; one 30Music slice (timed
    # tracks with source sessions), session-lastday
    "hetrec": ("hetrec-lastfm-2k", "hetrec2011-lastfm-2k", "user-holdout", {}),
    "30music": ("30music", os.path.join("30music-200ks-test-slices", "30music-200ks_test.2.txt"),
                "session-lastday", {"test_days": 1.0}),
}


@pytest.fixture(scope="module")
def engines():
    remote = RayEngine(num_cpus=2)    # joins (and leaves running) an instance another test started
    yield {"local": LocalEngine(), "ray": remote}
    remote.close()


@pytest.fixture(scope="module")
def pipelines(engines, shared_data, tmp_path_factory):
    """Per case and engine: (store URL, split) made with that engine (4 plays buckets)."""
    out = {}
    for case, (reader, rel, protocol, params) in CASES.items():
        for name, engine in engines.items():
            base = tmp_path_factory.mktemp(f"{case}-{name}")
            store = str(base / "store")
            ingest_path(reader, os.path.join(shared_data, rel), store, engine=engine, partitions=4)
            split = make_split(store, protocol, out=str(base / "split"), engine=engine, **params)
            out[case, name] = (store, split)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_ray_and_local_stores_are_identical(pipelines, case):
    local, remote = Store(pipelines[case, "local"][0]), Store(pipelines[case, "ray"][0])
    assert len(local.play_partitions()) == len(remote.play_partitions()) == 4
    for a, b in zip(local.play_partitions(), remote.play_partitions()):
        assert os.path.basename(a) == os.path.basename(b)
        assert _read(a).equals(_read(b))
    for name in TABLES:
        assert local.table(name).equals(remote.table(name)), name
    assert local.table("plays").height > 0


@pytest.mark.parametrize("case", list(CASES))
def test_ray_and_local_splits_are_identical(pipelines, case):
    local, remote = pipelines[case, "local"][1], pipelines[case, "ray"][1]
    assert local.test.height > 0
    for part in ("train", "valid", "test", "items", "item_tags", "users"):
        a, b = getattr(local, part), getattr(remote, part)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.equals(b), part
    meta = lambda m: {k: v for k, v in m.items() if k != "store"}  # noqa: E731
    assert meta(local.meta) == meta(remote.meta)


def test_the_30music_split_is_the_one_of_an_unpartitioned_store(pipelines, shared_data, tmp_path):
    """Partitioning is invisible: one bucket and four give the same split."""
    reader, rel, protocol, params = CASES["30music"]
    store = str(tmp_path / "store")
    ingest_path(reader, os.path.join(shared_data, rel), store, partitions=1)
    one = make_split(store, protocol, **params)
    four = pipelines["30music", "ray"][1]
    for part in ("train", "valid", "test"):
        assert getattr(one, part).equals(getattr(four, part)), part


def _read(url):
    from musicrec.store import read_play_partition

    return read_play_partition(url)


def test_cli_split_on_ray(pipelines, tmp_path):
    """`musicrec split --engine ray` (joining this module's Ray instance) writes the same split."""
    from typer.testing import CliRunner

    from musicrec.cli.main import _register, app
    from musicrec.preprocess.splitset import Split

    _register()
    store, local = pipelines["30music", "local"]
    out = str(tmp_path / "split")
    res = CliRunner().invoke(app, ["split", store, "--protocol", "session-lastday", "--test-days", "1",
                                   "--out", out, "--engine", "ray"])
    assert res.exit_code == 0, res.output
    saved = Split.load(out)
    for part in ("train", "valid", "test"):
        assert getattr(saved, part).equals(getattr(local, part)), part
    assert ray.is_initialized()      # a joined instance is left running for its owner
    res = CliRunner().invoke(app, ["split", store, "--protocol", "user-holdout", "--out", out,
                                   "--ray-address", "auto"])
    assert res.exit_code != 0 and "--ray-address needs --engine ray" in str(res.exception)
