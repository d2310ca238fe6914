import pytest

from musicrec import MusicrecError
from musicrec.train.fit import parse_param


def test_parse_param_reads_json_values():
    assert parse_param("factors=64") == ("factors", 64)
    assert parse_param("l2=12.5") == ("l2", 12.5)
    assert parse_param("weighting=bm25") == ("weighting", "bm25")
    assert parse_param("min-item-users=2") == ("min_item_users", 2)
    assert parse_param("flag=true") == ("flag", True)


def test_parse_param_rejects_missing_equals():
    with pytest.raises(MusicrecError):
        parse_param("factors")
