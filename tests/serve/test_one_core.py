"""One recommendation core: the CLI (`musicrec recommend` / `similar`) and the HTTP API give the
same items, scores and reasons for the same question: a listener, seed artists, tags, an item."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from musicrec.cli.main import main
from musicrec.serve.app import create_app


def cli_json(capsys, *args) -> list[dict]:
    with pytest.raises(SystemExit) as done:
        main([*args, "--json"])
    assert done.value.code in (0, None)
    return json.loads(capsys.readouterr().out)


def same(cli: list[dict], api: list[dict]) -> None:
    assert [c["item_id"] for c in cli] == [c["item_id"] for c in api]
    assert [c["reason"] for c in cli] == [c["reason"] for c in api]
    assert [round(c["score"], 5) for c in cli] == [round(c["score"], 5) for c in api]
    assert all(c["reason"] for c in cli)          # every answer says why


@pytest.mark.integration     # its model folder is a fixture asked for by name
@pytest.mark.parametrize("fixture", ["ease_dir", "als_dir"])
def test_cli_and_api_answer_alike(fixture, request, capsys):
    folder = request.getfixturevalue(fixture)
    client = TestClient(create_app(folder), base_url="http://127.0.0.1")
    with client:
        import polars as pl

        users = pl.read_parquet(f"{folder}/users.parquet")["source_id"].to_list()
        names = pl.read_parquet(f"{folder}/items.parquet")["name"].to_list()
        for user in users[:3]:
            api = client.get(f"/v1/users/{user}/recommendations", params={"k": 7}).json()["items"]
            same(cli_json(capsys, "recommend", folder, "--user", user, "-k", "7"), api)
        seeds = names[:2]
        api = client.post("/v1/recommendations", json={"seed_artists": seeds, "k": 6}).json()["items"]
        same(cli_json(capsys, "recommend", folder, "--seed", seeds[0], "--seed", seeds[1], "-k", "6"), api)
        api = client.post("/v1/recommendations", json={"seed_tags": ["rock"], "k": 5}).json()["items"]
        same(cli_json(capsys, "recommend", folder, "--tag", "rock", "-k", "5"), api)
        item = client.get("/v1/search", params={"q": names[3]}).json()["items"][0]
        api = client.get(f"/v1/items/{item['item_id']}/similar", params={"k": 5}).json()["items"]
        same(cli_json(capsys, "similar", folder, names[3], "-k", "5"), api)
