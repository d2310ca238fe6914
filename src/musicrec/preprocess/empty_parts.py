"""An empty test or validation part is an error that says why and what to change.

A split scored on nothing reports every metric as 0, which reads as a bad model rather than a
bad split; :func:`make_split <musicrec.preprocess.split.make_split>` calls :func:`check_parts`
on every protocol's result before anything is saved.
"""

from __future__ import annotations

import polars as pl

from musicrec import MusicrecError
from musicrec.preprocess.splitset import Split

#: what to change when a protocol holds out nothing
_FIXES = {"user-holdout": "raise --test-frac / --valid-frac", "temporal": "raise --test-frac / --valid-frac",
          "leave-last-out": "lower --last-n", "session-lastday": "raise --test-days",
          "item-coldstart": "raise --test-frac / --valid-frac", "user-coldstart": "raise --test-frac / --valid-frac"}


def check_parts(split: Split, events: pl.DataFrame, item_level: str, counts: dict, level_given: bool = True) -> None:
    """MusicrecError when the test part, or a validation part the protocol was asked to make,
    is empty: a split scored on nothing would report every metric as 0. The message says why
    (one listener, held-out items no training row has, too few distinct items per listener,
    plays without ids at this item level) and what to change. ``events`` are the protocol's
    input, ``counts`` :func:`make_split`'s step counts; ``level_given``: the caller chose the
    item level (else it was the default, so the other level is no way out). A split without a
    validation part by design (``valid`` is None) is fine.
    """
    for part, label in (("test", "test"), ("valid", "validation")):
        rows = getattr(split, part)
        # held-out rows of items no training row has are kept (standard protocol) but cannot be
        # hit: a part made only of them is as empty for scoring as one without rows
        unseen = (split.meta.get("unseen_in_train") or {}).get(part, 0)
        removed = (split.meta.get("removed_unseen") or {}).get(part, 0)
        if rows is not None and rows.height - (0 if removed else unseen) <= 0:
            why = _why_empty(split, part, events, item_level, counts, level_given)
            state = "is empty" if rows.height == 0 else "holds only items no training row has"
            raise MusicrecError(f"the {label} part {state}: {why}")


def _why_empty(split: Split, part: str, events: pl.DataFrame, level: str, counts: dict, level_given: bool) -> str:
    protocol = split.meta.get("protocol")
    n_users = events["user_id"].n_unique()
    removed = (split.meta.get("removed_unseen") or {}).get(part, 0) or (split.meta.get("unseen_in_train") or {}).get(part, 0)
    no_valid = {"user-holdout": "--valid-frac 0", "temporal": "--valid-frac 0", "leave-last-out": "--no-valid",
                "session-lastday": "--no-valid"}.get(protocol)
    or_none = f", or make none with {no_valid}" if part == "valid" and no_valid else ""
    personal = ("; with one listener (a personal export) try --protocol leave-last-out --item artist (their "
                "last plays held out: listeners repeat), or ingest the export into a store with many listeners "
                "(e.g. HetRec) and split that, or skip training: `musicrec recommend MODEL --history EXPORT` "
                "uses a model that knows many listeners" if protocol != "leave-last-out" else
                "; listeners repeat artists more than tracks: try --item artist")
    if n_users == 1 and split.evaluation == "user":
        return (f"the store has 1 listener after cleaning, so no held-out {level} is in anyone's training plays; "
                f"{protocol} needs more listeners{personal}")
    if n_users == 1:
        return (f"the store has 1 listener after cleaning, so the held-out {level}s are in no training session; "
                f"{protocol} needs more listeners{personal}")
    if counts.get("dropped_no_item") and level == "track" and counts["dropped_no_item"] * 2 >= counts["plays"]:
        return (f"{counts['dropped_no_item']:,} of {counts['plays']:,} plays have no track id at --item track level; "
                "try --item artist")
    if removed:
        return (f"all {removed:,} held-out rows are of {level}s that no training row has ({n_users:,} listeners); "
                f"{protocol} needs more listeners sharing {level}s{', or try --item artist' if level == 'track' else ''}")
    most = ""
    if protocol in ("user-holdout", "leave-last-out"):
        need = (split.meta.get("params") or {}).get("min_items") or 2
        n_most = events.group_by("user_id").agg(pl.col("item_id").n_unique())["item_id"].max()
        if n_most < need:
            fix = "try --item track" if level == "artist" and level_given else f"{protocol} needs listeners with more {level}s"
            return (f"no listener has the {need} distinct {level}s {protocol} needs to hold some out (the most any "
                    f"has is {n_most}); {fix}{or_none}")
        most = f" (at most {n_most} distinct {level}s each)"
    return (f"{protocol} held out no rows for it from {events.height:,} events of {n_users:,} listeners{most}; "
            f"{_FIXES.get(protocol, 'change the protocol parameters')}{or_none}")
