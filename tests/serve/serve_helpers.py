"""Helpers for the serving tests: tiny settings per model and a bundle trainer."""

from __future__ import annotations

#: the Host header FastAPI's TestClient sends ("testserver"): accepted only where a test says so
TEST_HOSTS = ["testserver"]

# tiny settings per model: the tests check serving, not accuracy
TINY = {
    "most-popular": {},
    "recently-played": {},
    "itemknn": {"neighbors": 20},
    "ease": {},
    "als": {"factors": 8, "iterations": 2},
    "bpr": {"factors": 8, "iterations": 2},
    "sknn": {"k": 20, "sample_size": 50},
    "sr": {},
    "sasrec": {"embedding_dim": 16, "n_layers": 1, "max_len": 10, "n_negatives": 32, "epochs": 1},
    "nextitnet": {"embedding_dim": 16, "max_len": 10, "n_negatives": 32, "epochs": 1},
    "caser": {"embedding_dim": 16, "n_h": 4, "n_v": 2, "n_negatives": 32, "epochs": 1},
    "gru4rec": {"hidden_size": 16, "max_len": 10, "n_negatives": 32, "epochs": 1},
    "multvae": {"hidden_dims": 32, "latent_dim": 8, "epochs": 1},
    "two-tower": {"embedding_dim": 16, "epochs": 1},
    "ranker": {"candidates": "sr,itemknn,most-popular", "n_candidates": 20, "n_trees": 30},
}


def train_bundle(name: str, split_dir: str, out: str, params: dict | None = None) -> str:
    """Fit registry model ``name`` on the split folder and save a bundle to ``out`` (as `musicrec train`)."""
    from musicrec.bundle import ModelBundle, bundle_meta
    from musicrec.preprocess.splitset import Split
    from musicrec.train.fit import fit_model

    split = Split.load(split_dir)
    params = TINY.get(name, {}) if params is None else params
    # include_valid: deep models train exactly `epochs` without validating each epoch
    model, fit_s = fit_model(name, split, params, include_valid=True)
    ModelBundle(model, split.items, split.users,
                bundle_meta(split, split_dir, True, fit_s=fit_s, params=model.get_params())).save(out)
    return out
