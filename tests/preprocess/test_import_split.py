import polars as pl
import pytest
from prep_helpers import tiny_store

from musicrec import MusicrecError
from musicrec.preprocess.import_split import import_split, read_split_file
from musicrec.preprocess.splitset import Split


def write(path, text):
    path.write_text(text)
    return str(path)


@pytest.fixture
def store(tmp_path):
    return tiny_store(tmp_path / "store")


def test_import_hetrec_style_artist_ids(store, tmp_path):
    train = write(tmp_path / "train.tsv", "user_id\titem_id\tweight\n7\t7\t5\n7\t51\t2\n8\t51\t3\n")
    test = write(tmp_path / "test.csv", "user_id,item_id\n8,7\n99,51\n8,12345\n")
    sp = import_split(store, train, test, source="hetrec", out=str(tmp_path / "split"))
    assert sp.meta["item_level"] == "artist" and sp.evaluation == "user"
    assert sp.train.select("user_id", "item_id", "weight").rows() == [(1, 10, 5.0), (1, 11, 2.0), (2, 11, 3.0)]
    # unknown user 99 and unknown item 12345 are kept with negative ids
    assert sp.test.select("user_id", "item_id").rows() == [(2, 10), (-1, 11), (2, -1)]
    assert sp.test["weight"].to_list() == [1.0, 1.0, 1.0]
    assert sp.meta["unknown"] == {"users": 1, "items": 1, "rows_with_unknown_user": 1, "rows_with_unknown_item": 1}
    names = dict(sp.items.select("item_id", "name").rows())
    assert names == {10: "Abba", 11: "Blur", -1: "12345"}
    assert sorted(sp.item_tags.rows()) == [(10, "disco", 1.0), (10, "pop", 3.0)]
    assert dict(sp.users.rows()) == {1: "7", 2: "8", -1: "99"}
    assert Split.load(str(tmp_path / "split")).test.equals(sp.test)


def test_import_session_files_at_track_level(store, tmp_path):
    # session-rec style header; ids are 30Music track ids; store user/track keys work too
    train = write(tmp_path / "train.txt", "UserId\tSessionId\tItemId\tTime\n7\t5\t1000\t100\n7\t5\t1001\t160\n")
    test = write(tmp_path / "test.txt", "UserId\tSessionId\tItemId\tTime\n30music:9\t6\t1002\t500\n9\t6\t1000\t560\n")
    sp = import_split(store, train, test, source="30music")
    assert sp.meta["item_level"] == "track" and sp.evaluation == "session"
    assert sp.test.select("user_id", "item_id", "session_id").rows() == [(4, 102, 6), (4, 100, 6)]
    assert (sp.test["timestamp"].dt.epoch("s")).to_list() == [500, 560]
    tags = sorted(sp.item_tags.rows())
    assert tags == [(100, "rock", 1.0), (101, "rock", 1.0)]        # the tracks' artist 20


def test_import_ambiguous_ids_need_a_source(store, tmp_path):
    f = write(tmp_path / "f.tsv", "user_id\titem_id\n7\t51\n")
    with pytest.raises(MusicrecError, match="several store ids.*30music, hetrec"):
        import_split(store, f, f)
    with pytest.raises(MusicrecError, match="not in the store"):
        import_split(store, f, f, source="spotify")


def test_import_parquet_and_per_user_session_ids(store, tmp_path):
    # session "1" is used by two users: ids are renumbered per (user, session)
    df = pl.DataFrame({"user_id": ["7", "7", "9", "9"], "item_id": ["1000", "1001", "1000", "1002"],
                       "session_id": [1, 1, 1, 1]})
    df.write_parquet(tmp_path / "t.parquet")
    sp = import_split(store, str(tmp_path / "t.parquet"), str(tmp_path / "t.parquet"), source="30music")
    assert sp.test["session_id"].to_list() == [0, 0, 1, 1]


def test_missing_columns_and_files(store, tmp_path):
    bad = write(tmp_path / "bad.csv", "user,track\n1,2\n")
    with pytest.raises(MusicrecError, match="missing required column.*user_id, item_id"):
        read_split_file(bad)
    half = write(tmp_path / "half.csv", "user_id,song\n1,2\n")
    with pytest.raises(MusicrecError, match="half.csv: missing required column.*item_id"):
        import_split(store, half, half)
    with pytest.raises(MusicrecError, match="no such file"):
        read_split_file(str(tmp_path / "nope.tsv"))
    nums = write(tmp_path / "nums.csv", "user_id,item_id,weight\n7,7,lots\n")
    with pytest.raises(MusicrecError, match="must be numbers"):
        import_split(store, nums, nums, source="hetrec")
