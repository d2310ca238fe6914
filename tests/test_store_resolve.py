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
    known = known.with_columns(norm=pl.col("ident"), name=pl.col("ident"))
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
    new = new.with_columns(norm=pl.col("ident"), name=pl.col("ident"))
    got = {r["key"]: (r["id"], r["to_key"], r["rule"]) for r in resolve(known, new).iter_rows(named=True)}
    assert got == {"mbid:" + RADIOHEAD: (1, None, "mbid"), "name:abba": (3, None, "name"),
                   "name:genesis": (4, None, "ambiguous"), "x:sigur ros": (None, "name:sigur rós", "name"),
                   "name:kent": (None, "x:1", "name")}
    kept = resolve(known, new, keep_apart=frozenset({"abba"}))
    assert "name:abba" not in kept["key"].to_list()
    # of two stored artists with one identity key, the one spelt the same (but for case) is taken
    cols = {"ident": pl.String, "mbid": pl.String, "norm": pl.String, "name": pl.String}
    gaga = _frame([(1, "hetrec:1", "lady gaga", None, "lady gaga feat beyonce", "Lady Gaga feat Beyoncé"),
                   (2, "hetrec:2", "lady gaga", None, "lady gaga", "Lady Gaga")], {"id": pl.Int64, "key": pl.String, **cols})
    one = _frame([("mbid:x", "lady gaga", None, "lady gaga", "LADY GAGA")], {"key": pl.String, **cols})
    assert resolve(gaga, one).rows() == [("mbid:x", 2, None, "name")]
    # HetRec's N.E.R.D. and N*E*R*D fold to one spelling: the very name decides
    nerd = _frame([(3, "hetrec:3", "n e r d", None, "n e r d", "N.E.R.D."), (9, "hetrec:9", "n e r d", None, "n e r d", "N*E*R*D")],
                  {"id": pl.Int64, "key": pl.String, **cols})
    one = _frame([("name:n*e*r*d", "n e r d", None, "n e r d", "N*E*R*D")], {"key": pl.String, **cols})
    assert resolve(nerd, one).rows() == [("name:n*e*r*d", 9, None, "name")]


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
    assert store.table("artists").height == 3 and store.table("tracks").height == 3
    # a third source spelling them as the second did: the aliases serve it, nothing new
    third = _csv(tmp_path / "c.csv", [("cid", "beatles", "Let It Be - Remastered 2009", "2023-03-01T10:00:00Z")])
    store.ingest(read("csv", third, source="two"))
    assert store.table("artists").height == 3 and store.table("plays").height == 6
    assert store.table("plays").sort("timestamp")["artist_id"][-1] == ann["artist_id"][0]


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


def test_listenbrainz_and_spotify_exports_of_one_listener_land_on_hetrec_artists(shared_data, tmp_path):
    """The issue's case: one listener's ListenBrainz export (MBIDs where the Last.fm-1K sample
    knows the artist) and Spotify export, ingested into the HetRec store with ``musicrec ingest``,
    give every artist its HetRec id, and the ingest prints how many matched."""
    import os
    import zipfile

    from typer.testing import CliRunner

    from musicrec.cli import main
    from musicrec.store import ingest_path

    store = str(tmp_path / "store")
    ingest_path("hetrec-lastfm-2k", os.path.join(shared_data, "hetrec2011-lastfm-2k"), store)
    k1 = read("lastfm-1k", os.path.join(shared_data, "lastfm-1k-sample")).artists
    mbids = {n: k[5:] for k, n in k1.select("artist_key", "name").iter_rows() if k.startswith("mbid:")}
    hetrec = Store(store).table("artists")
    het = dict(zip(hetrec["name"].to_list(), hetrec["artist_id"].to_list()))
    names = [n for n in ["Radiohead", "Boards of Canada", "Björk", "The Beatles", "Sigur Rós", "Portishead",
                         "Massive Attack", "Everything but the Girl", "Daft Punk"] if n in het]
    with_mbid = [n for n in names if n in mbids]
    assert len(names) >= 8 and with_mbid                       # some carry MusicBrainz ids
    lb = tmp_path / "listenbrainz_dana.zip"
    with zipfile.ZipFile(lb, "w") as zf:
        zf.writestr("user.json", json.dumps({"username": "dana"}))
        zf.writestr("listens/2021/1.jsonl", "\n".join(json.dumps({
            "listened_at": 1_610_000_000 + 60 * i, "track_metadata": {
                "artist_name": n.upper() if i % 2 else n, "track_name": "Intro",
                "additional_info": {"artist_mbids": [mbids[n]]} if n in mbids else {}}}) for i, n in enumerate(names)))
    sp = tmp_path / "spotify"
    sp.mkdir()
    (sp / "Streaming_History_Audio_2021_0.json").write_text(json.dumps([
        {"ts": f"2021-06-01T10:{i:02d}:00Z", "username": "dana.s", "ms_played": 200_000,
         "master_metadata_track_name": "Intro - Remastered 2011", "master_metadata_album_artist_name": n,
         "spotify_track_uri": f"spotify:track:{i}"} for i, n in enumerate(names)]))
    runner = CliRunner()
    main._register()
    out_lb = runner.invoke(main.app, ["ingest", "listenbrainz", str(lb), "--store", store])
    out_sp = runner.invoke(main.app, ["ingest", "spotify-history", str(sp), "--store", store])
    assert out_lb.exit_code == 0 and out_sp.exit_code == 0, out_lb.output + out_sp.output
    assert "matched to artists/tracks already in the store" in out_lb.stdout and "artists by name" in out_lb.stdout
    assert "tracks by name" in out_sp.stdout, out_sp.stdout      # the same "Intro" by the same artist
    s = Store(store)
    users = s.table("users").filter(pl.col("source_id").is_in(["dana", "dana.s"]))
    assert users.height == 2                                     # two exports, two names: two listeners
    for uid in users["user_id"].to_list():
        got = s.table("plays").filter(pl.col("user_id") == uid).sort("timestamp")["artist_id"].to_list()
        assert got == [het[n] for n in names]
    assert s.table("artists").height == hetrec.height           # no artist was added
