"""Entity resolution at ingest: one artist from several sources is one store id."""

import json

import polars as pl

from musicrec.ingest.readers import read
from musicrec.names import identity_key, track_identity_key
from musicrec.store import Store
from musicrec.store.resolve import resolve

RADIOHEAD = "a74b1b7f-71a5-4011-9441-d0b5e4122711"
NIRVANA_US = "5b11f4ce-a62d-471e-81fc-a69a8278c7da"
NIRVANA_UK = "9282c8b4-ca0b-4c6b-b7e3-4f7762dfc4d6"


def test_identity_keys_of_spellings_that_name_one_artist():
    assert identity_key("The Beatles") == identity_key("beatles") == "beatles"
    assert identity_key("Beyoncé feat. Jay-Z") == identity_key("BEYONCE") == "beyonce"
    assert identity_key("Florence + The Machine") == identity_key("Florence and the Machine")
    assert identity_key("Мумий Тролль") == "mumiy troll"                     # transliterated
    assert identity_key("Simon & Garfunkel") == "simon and garfunkel"
    assert identity_key("!!!") == ""                                         # nothing left: never matched
    assert track_identity_key("Queen", "Bohemian Rhapsody - Remastered 2011") == \
        track_identity_key("Queen", "Bohemian Rhapsody (2011 Remaster)") == "queen|bohemian rhapsody"
    assert track_identity_key("Queen", "Bohemian Rhapsody - Live") != track_identity_key("Queen", "Bohemian Rhapsody")


def _frame(rows, cols):
    return pl.DataFrame(rows, schema=cols, orient="row")


def test_resolve_rules():
    known = _frame([(1, "mbid:" + RADIOHEAD, "radiohead", RADIOHEAD), (2, "mbid:" + NIRVANA_US, "nirvana", NIRVANA_US),
                    (3, "hetrec:3", "abba", None), (4, "hetrec:4", "genesis", None), (5, "hetrec:5", "genesis", None),
                    (6, "hetrec:6", "beyonce", None), (7, "hetrec:7", "beyonce", None)],
                   {"id": pl.Int64, "key": pl.String, "ident": pl.String, "mbid": pl.String})
    new = _frame([("mbid:" + RADIOHEAD, "radiohead", RADIOHEAD),       # same MBID: mbid rule
                  ("name:abba", "abba", None),                           # same name: name rule
                  ("mbid:" + NIRVANA_UK, "nirvana", NIRVANA_UK),         # a different MBID: kept apart
                  ("name:genesis", "genesis", None),                     # two stored: ambiguous, lowest id
                  ("name:sigur rós", "sigur ros", None),                 # new, first of its name
                  ("x:sigur ros", "sigur ros", None),                    # new, same name as a new key
                  ("name:!!!", "", None),                                # no name: unresolved
                  ("hetrec:8", "abba", None),                            # a source's own two ids stay two
                  ("x:1", "kent", None), ("x:2", "kent", None),          # (also among new keys)
                  ("name:kent", "kent", None)],                          # a spelling joins the first
                 {"key": pl.String, "ident": pl.String, "mbid": pl.String})
    got = {r["key"]: (r["id"], r["to_key"], r["rule"]) for r in resolve(known, new).iter_rows(named=True)}
    assert got == {"mbid:" + RADIOHEAD: (1, None, "mbid"), "name:abba": (3, None, "name"),
                   "name:genesis": (4, None, "ambiguous"), "x:sigur ros": (None, "name:sigur rós", "name"),
                   "name:kent": (None, "x:1", "name")}
    kept = resolve(known, new, keep_apart=frozenset({"abba"}))
    assert "name:abba" not in kept["key"].to_list()


def _csv(path, rows, header="user,artist,track,timestamp"):
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n")
    return str(path)


def test_two_sources_share_artist_and_track_ids_and_keep_their_own_names(tmp_path):
    store = Store(str(tmp_path / "s"))
    first = _csv(tmp_path / "a.csv", [("ann", "The Beatles", "Let It Be", "2023-01-01T10:00:00Z"),
                                      ("ann", "Björk", "Hunter", "2023-01-01T10:05:00Z")])
    store.ingest(read("csv", first, source="one"))
    second = _csv(tmp_path / "b.csv", [("bob", "beatles", "Let It Be - Remastered 2009", "2023-02-01T10:00:00Z"),
                                       ("bob", "Bjork", "Hunter", "2023-02-01T10:05:00Z"),
                                       ("bob", "Sigur Rós", "Hoppípolla", "2023-02-01T10:10:00Z")])
    report = store.ingest(read("csv", second, source="two"))
    assert report.matched == {"artists by name": 2, "tracks by name": 2}
    assert report.added["artists"] == 1 and report.added["tracks"] == 1          # only Sigur Rós is new
    plays = store.table("plays").join(store.table("users").select("user_id", "source_id"), on="user_id")
    ann = plays.filter(pl.col("source_id") == "ann").sort("timestamp")
    bob = plays.filter(pl.col("source_id") == "bob").sort("timestamp")
    assert ann["artist_id"].to_list() == bob["artist_id"].to_list()[:2]
    assert ann["track_id"].to_list() == bob["track_id"].to_list()[:2]
    aliases = store.table("aliases")
    assert sorted(aliases.filter(pl.col("entity") == "artist")["name"].to_list()) == ["Bjork", "beatles"]
    assert store.table("artists").height == 3                                     # one row per artist
    again = store.ingest(read("csv", second, source="two"))                        # idempotent
    assert again.plays_added == 0 and again.matched == {} and store.table("aliases").height == 4


def test_listenbrainz_mbids_are_matched_and_distinct_mbids_kept_apart(tmp_path):
    store = Store(str(tmp_path / "s"))
    listens = [{"listened_at": 1700000000 + i, "user_name": "carol",
                "track_metadata": {"artist_name": name, "track_name": f"T{i}",
                                   "additional_info": {"artist_mbids": [mbid]}}}
               for i, (name, mbid) in enumerate([("Radiohead", RADIOHEAD), ("Nirvana", NIRVANA_US)])]
    (tmp_path / "lb.jsonl").write_text("\n".join(json.dumps(x) for x in listens))
    store.ingest(read("listenbrainz", str(tmp_path / "lb.jsonl")))
    uk = [{"listened_at": 1700001000, "user_name": "dave",
           "track_metadata": {"artist_name": "Nirvana", "track_name": "X",
                              "additional_info": {"artist_mbids": [NIRVANA_UK]}}}]
    (tmp_path / "uk.jsonl").write_text(json.dumps(uk[0]))
    report = store.ingest(read("listenbrainz", str(tmp_path / "uk.jsonl")))
    assert report.matched == {} and report.added["artists"] == 1                  # another band of that name
    spotify = _csv(tmp_path / "s.csv", [("erin", "radiohead", "Creep", "2024-06-01T10:00:00Z")])
    report = store.ingest(read("csv", spotify, source="three"))
    assert report.matched == {"artists by name": 1}
    ids = store.table("artists").filter(pl.col("key") == "mbid:" + RADIOHEAD)["artist_id"].to_list()
    erin = store.table("plays").sort("timestamp")["artist_id"].to_list()[-1]
    assert ids == [erin]
