"""Full-catalogue evaluation throughput of a dot-product model (users per second).

    python benchmarks/scoring_speed.py [--items 20000] [--users 20000] [--factors 64]

Builds synthetic implicit data (each user plays 40 training and 10 test items drawn from a
long-tailed catalogue), fits ALS, then times ``musicrec.evaluate.protocols.evaluate`` (score =
one matrix product per batch, mask training items, top-k, all metrics at K = 10, 20). The goal
in the issue is >= 5,000 users/s over a 20,000-item catalogue on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from musicrec.evaluate.protocols import evaluate
from musicrec.features.interactions import Interactions
from musicrec.models.als import ALS
from musicrec.preprocess.splitset import Split


def synthetic_split(n_users: int, n_items: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8          # Zipf-like popularity
    pop /= pop.sum()
    items = np.stack([rng.choice(n_items, size=50, replace=False, p=pop) for _ in range(n_users)])
    users = np.repeat(np.arange(n_users), 50).reshape(n_users, 50)
    frame = lambda sl: pl.DataFrame({"user_id": users[:, sl].ravel(), "item_id": items[:, sl].ravel(),  # noqa: E731
                                     "weight": np.ones(users[:, sl].size)})
    return Split(train=frame(slice(0, 40)), test=frame(slice(40, 50)), meta={"evaluation": "user"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args(argv)
    split = synthetic_split(args.users, args.items)
    train = Interactions.from_frame(split.train)
    model = ALS(factors=args.factors, iterations=3).fit(train)
    evaluate(model, split, ks=(10, 20), batch_size=args.batch_size)   # warm-up
    start = time.perf_counter()
    result = evaluate(model, split, ks=(10, 20), batch_size=args.batch_size)
    seconds = time.perf_counter() - start
    n = result.info.get("n_users", args.users)
    print(f"{n} users x {train.n_items} items, {args.factors} factors: {seconds:.2f} s -> {n / seconds:,.0f} users/s "
          f"(batch {args.batch_size}; ndcg@10 {result.metrics['ndcg@10']:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
