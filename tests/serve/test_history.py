"""Recommendations for a listener's own export (``serve.history``, ``recommend --history``, the
upload route): the same answer as the model gives a listener it knows, from the same plays."""

import json
import os
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from musicrec.serve.history import detect, history_of
from musicrec.serve.service import Service

pytestmark = pytest.mark.integration


def _export(svc: Service, u: int, folder) -> str:
    """Listener ``u``'s training artists as a Spotify export: each artist's play count spread
    over that many dated streams (HetRec gives counts only)."""
    import datetime as dt

    row = svc.train.matrix.tocsr()[u]
    t = dt.datetime(2020, 1, 1)
    streams = []
    for j, c in zip(row.indices, row.data):
        for _ in range(int(c)):
            t += dt.timedelta(minutes=4)
            streams.append({"ts": t.strftime("%Y-%m-%dT%H:%M:%SZ"), "ms_played": 180_000,
                            "master_metadata_track_name": "a song", "master_metadata_album_artist_name": svc.names[j],
                            "spotify_track_uri": f"spotify:track:{j}"})
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "Streaming_History_Audio_2020_0.json"), "w") as fh:
        json.dump(streams, fh)
    return str(folder)


def _small_listeners(svc: Service, n: int) -> list[int]:
    totals = np.asarray(svc.train.matrix.sum(axis=1)).ravel()
    return [int(u) for u in np.flatnonzero((totals > 0) & (totals <= 1500))[:n]]


@pytest.mark.parametrize("model", ["ease", "als"])
def test_an_export_of_a_known_listener_gets_their_recommendations(model, ease_dir, als_dir, tmp_path):
    svc = Service.load(ease_dir if model == "ease" else als_dir, one_off=True)
    overlap = []
    for u in _small_listeners(svc, 5):
        found = history_of(svc, _export(svc, u, tmp_path / f"u{u}"))
        assert found.n_matched == found.n_plays and not found.unmatched
        native = [c["item_id"] for c in svc.recommend_user(svc.bundle.users["source_id"][u], k=10)]
        mine = [c["item_id"] for c in svc.recommend_history(found.items, found.plays, k=10)]
        overlap.append(len(set(native) & set(mine)))
    # EASE takes the very row: the same list; ALS folds the listener in: nearly the same
    assert np.mean(overlap) >= (10 if model == "ease" else 8), overlap


def test_recommend_history_cli_api_and_zip_agree(ease_dir, tmp_path):
    from musicrec.cli import main
    from musicrec.serve.app import create_app

    svc = Service.load(ease_dir, one_off=True)
    u = _small_listeners(svc, 1)[0]
    folder = _export(svc, u, tmp_path / "export")
    with open(os.path.join(folder, "Streaming_History_Audio_2020_0.json")) as fh:
        streams = json.load(fh)
    streams.append({**streams[0], "master_metadata_album_artist_name": "Not In HetRec At All"})
    body = json.dumps(streams).encode()
    with open(os.path.join(folder, "Streaming_History_Audio_2020_0.json"), "wb") as fh:
        fh.write(body)
    zipped = tmp_path / "my_spotify_data.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("Spotify Extended Streaming History/Streaming_History_Audio_2020_0.json", body)
    assert detect(zipped) == "spotify-history"

    main._register()
    out = CliRunner().invoke(main.app, ["recommend", ease_dir, "--history", str(zipped), "--json"])
    assert out.exit_code == 0, out.output
    cli = [c["item_id"] for c in json.loads(out.stdout)]
    assert "Not In HetRec At All (1)" in out.stderr and f"{len(streams) - 1:,} (" in out.stderr

    client = TestClient(create_app(ease_dir), base_url="http://127.0.0.1")
    for data in (body, zipped.read_bytes()):
        r = client.post("/v1/history/recommendations", content=data)
        assert r.status_code == 200, r.text
        assert [c["item_id"] for c in r.json()["items"]] == cli
        h = r.json()["history"]
        assert (h["plays"], h["matched_plays"]) == (len(streams), len(streams) - 1)
        assert h["unmatched"] == [{"name": "Not In HetRec At All", "plays": 1}]
    native = [c["item_id"] for c in svc.recommend_user(svc.bundle.users["source_id"][u], k=10)]
    assert cli == native


def test_history_errors_are_one_line(ease_dir, tmp_path, capsys):
    from musicrec.cli.main import main

    (tmp_path / "nobody.csv").write_text("artist,track\nNot In HetRec At All,x\n")
    for args, words in [(["--history", str(tmp_path / "nobody.csv")], "none of the 1 plays"),
                        (["--history", str(tmp_path / "missing.zip")], "does not exist"),
                        (["--history", str(tmp_path / "nobody.csv"), "--user", "2"], "give either")]:
        with pytest.raises(SystemExit) as exc:
            main(["recommend", ease_dir, *args])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
