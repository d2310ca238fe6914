"""Entity resolution: one artist (or track) from several sources is one store id.

Readers key entities by what their source knows (``hetrec:51``, ``mbid:<uuid>``,
``name:radiohead``, ``spotify:track:<id>``), so the same artist from two sources would get two ids
and a listener's export would touch none of the listeners already stored. At ingest, each key
the store has not seen is matched, in this order, to an artist already stored or to another new
key of the same ingest:

1. ``mbid``: the key is ``mbid:<uuid>`` and a stored artist has that MusicBrainz id as its
   source id (keys already equal need no rule);
2. ``name``: both names have the same :func:`musicrec.names.identity_key` (case, accents and
   transliteration, punctuation, a leading "The", "&"/"+"/"and", "feat." credits) -- unless both
   sides carry MusicBrainz ids and these differ (two artists who share a name);
3. tracks: the same resolved artist and the same :func:`musicrec.names.track_identity_key` of the
   title ("- Remastered 2011"-style suffixes dropped).

A key matched to a stored entity is written to the ``aliases`` table (``entity``, ``key``, ``id``,
the source's own ``source_id`` and ``name``, and the ``rule``); the entity tables keep one row
per id. A user corrects a wrong match by giving the names to keep apart (``keep_apart``). When a
name matches several stored artists the lowest id wins (reported as ``ambiguous``).
"""

from __future__ import annotations

import re

import polars as pl

from musicrec import schema
from musicrec.names import identity_key, normalise, track_identity_key

STORE_ALIASES = schema.STORE_ALIASES
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _mbid(key: str | None, source_id: str | None) -> str | None:
    """The MusicBrainz id a row carries (its ``mbid:`` key or a UUID source id), else None."""
    if key and key.startswith("mbid:"):
        return key[5:]
    return source_id if source_id and _UUID.match(source_id) else None


def _idents(names: pl.Series, fn) -> pl.Series:
    return pl.Series([fn(n) if n else "" for n in names.to_list()], dtype=pl.String)


_NONE = pl.DataFrame(schema={"key": pl.String, "id": pl.Int64, "to_key": pl.String, "rule": pl.String})


def _namespace(key: str) -> str:
    """The id scheme of a key: ``hetrec`` for ``hetrec:51``, ``name`` for ``name:radiohead``."""
    return key.split(":", 1)[0] if ":" in key else ""


def resolve(known: pl.DataFrame, new: pl.DataFrame, keep_apart: frozenset = frozenset()) -> pl.DataFrame:
    """Which new keys stand for an entity already known, or for another new key.

    A source's own ids are taken at their word: an entity never gets two keys of one id scheme
    (HetRec's two artists both spelt "Beyonce" stay two), except ``name:`` keys, which are only
    spellings. Two sides with different MusicBrainz ids are never merged.

    Parameters
    ----------
    known : DataFrame ``{id, key, ident, mbid, norm, name}``, one row per stored key (entity rows
        and aliases); ``norm`` is the name with only case, accents and punctuation folded
        (``names.normalise``): among several entities of one identity key the one with the very
        name is taken, else the one with the same ``norm``, else the lowest id
    new : DataFrame ``{key, ident, mbid, norm, name}``: keys the store has not seen, in the order ids
        are given
    keep_apart : identity keys never merged by name (a user's correction)

    Returns
    -------
    DataFrame ``{key, id, to_key, rule}``: a new key resolved to stored ``id`` (``to_key`` null)
    or to the new key ``to_key`` (``id`` null) that becomes the entity; ``rule`` is ``mbid``,
    ``name`` or ``ambiguous`` (several stored entities have that identity key and not exactly one
    is spelt the same: the lowest id is taken).
    Unresolved keys are absent.
    """
    out = {"key": [], "id": [], "to_key": [], "rule": []}
    by_mbid, groups, schemes, mbids = {}, {}, {}, {}
    spelt, named = {}, {}                   # id -> its names with case and accents folded / as written
    for i, key, ident, m, norm, name in known.select("id", "key", "ident", "mbid", "norm", "name").iter_rows():
        spelt.setdefault(i, set()).add(norm)
        named.setdefault(i, set()).add(name)
        if m:
            by_mbid.setdefault(m, i)
            mbids.setdefault(i, set()).add(m)
        if ident:
            groups.setdefault(ident, set()).add(i)
        schemes.setdefault(i, set()).add(_namespace(key))
    heads: dict[str, list[dict]] = {}       # ident -> new keys that become entities

    def fits(ns: str, m: str | None, their_schemes: set, their_mbids: set) -> bool:
        return (ns == "name" or ns not in their_schemes) and not (m and their_mbids and m not in their_mbids)

    for key, ident, m, norm, name in new.select("key", "ident", "mbid", "norm", "name").iter_rows():
        ns = _namespace(key)
        if m and m in by_mbid:
            i = by_mbid[m]
            out["key"].append(key), out["id"].append(i), out["to_key"].append(None), out["rule"].append("mbid")
            continue
        if not ident or ident in keep_apart:
            continue
        ids = sorted(groups.get(ident, ()))
        # of several, the one named exactly so, else spelt the same but for case and accents ("Lady
        # Gaga", not "Lady Gaga feat Beyoncé"), then the lowest id
        fit = sorted((i for i in ids if fits(ns, m, schemes[i], mbids.get(i, set()))),
                     key=lambda i: (name not in named[i], norm not in spelt[i], i))
        if fit:
            schemes[fit[0]].add(ns)
            out["key"].append(key), out["id"].append(fit[0]), out["to_key"].append(None)
            same = [i for i in ids if name in named[i]] or [i for i in ids if norm in spelt[i]]
            out["rule"].append("name" if len(ids) == 1 or same == [fit[0]] else "ambiguous")
            continue
        head = next((h for h in heads.get(ident, []) if fits(ns, m, h["schemes"], h["mbids"])), None)
        if head is None:
            heads.setdefault(ident, []).append({"key": key, "schemes": {ns}, "mbids": {m} if m else set()})
            continue
        head["schemes"].add(ns)
        out["key"].append(key), out["id"].append(None), out["to_key"].append(head["key"]), out["rule"].append("name")
    return pl.DataFrame(out, schema=_NONE.schema)


def known_artists(artists: pl.DataFrame, aliases: pl.DataFrame) -> pl.DataFrame:
    """``{id, key, ident, mbid}`` of every stored artist key (entity rows and aliases)."""
    a = aliases.filter(pl.col("entity") == "artist")
    rows = pl.concat([artists.select("key", "source_id", "name", id="artist_id"),
                      a.select("key", "source_id", "name", "id")])
    return _with_idents(rows, identity_key).select("id", "key", "ident", "mbid", "norm", "name")


def _with_idents(rows: pl.DataFrame, fn) -> pl.DataFrame:
    mbids = [_mbid(k, s) for k, s in zip(rows["key"].to_list(), rows["source_id"].to_list())]
    return rows.with_columns(ident=_idents(rows["name"], fn), mbid=pl.Series(mbids, dtype=pl.String),
                             norm=_idents(rows["name"], normalise))


def new_artists(incoming: pl.DataFrame, lookup: pl.DataFrame) -> pl.DataFrame:
    """``{key, ident, mbid}`` of incoming artist keys (``key, source_id, name``) not in ``lookup``
    (``key``), in key order (the order new ids are given in)."""
    fresh = incoming.join(lookup.select("key"), on="key", how="anti").filter(pl.col("key").is_not_null()).sort("key")
    return _with_idents(fresh, identity_key).select("key", "ident", "mbid", "norm", "name")


def known_tracks(tracks: pl.DataFrame, aliases: pl.DataFrame, artist_ids: pl.Series) -> pl.DataFrame:
    """``{id, key, ident, mbid}`` of the stored tracks of ``artist_ids`` (the only ones a new track
    can match); the ident is ``"<artist_id>|<title key>"``."""
    t = tracks.filter(pl.col("artist_id").is_in(artist_ids.unique().drop_nulls().implode()))
    a = aliases.filter(pl.col("entity") == "track").join(t.select("track_id", "artist_id"),
                                                         left_on="id", right_on="track_id", how="inner")
    rows = pl.concat([t.select("key", "source_id", "name", "artist_id", id="track_id"),
                      a.select("key", "source_id", "name", "artist_id", "id")])
    return _track_idents(rows).select("id", "key", "ident", "mbid", "norm", "name")


def new_tracks(incoming: pl.DataFrame, lookup: pl.DataFrame) -> pl.DataFrame:
    """``{key, ident, mbid}`` of incoming tracks (``key, source_id, name, artist_id``) not in
    ``lookup``, in key order."""
    fresh = incoming.join(lookup.select("key"), on="key", how="anti").filter(pl.col("key").is_not_null()).sort("key")
    return _track_idents(fresh).select("key", "ident", "mbid", "norm", "name")


def _track_idents(rows: pl.DataFrame) -> pl.DataFrame:
    titles = [track_identity_key("", n)[1:] if n and a is not None else ""
              for n, a in zip(rows["name"].to_list(), rows["artist_id"].to_list())]
    idents = [f"{a}|{t}" if t else "" for a, t in zip(rows["artist_id"].to_list(), titles)]
    mbids = [_mbid(k, s) for k, s in zip(rows["key"].to_list(), rows["source_id"].to_list())]
    return rows.with_columns(ident=pl.Series(idents, dtype=pl.String), mbid=pl.Series(mbids, dtype=pl.String),
                             norm=_idents(rows["name"], normalise))


def alias_rows(entity: str, matches: pl.DataFrame, incoming: pl.DataFrame, ids: pl.DataFrame,
               id_col: str) -> pl.DataFrame:
    """``aliases`` rows of the matched keys: stored ids as matched, ``to_key`` matches given the
    id their key got (``ids``: ``key, <id_col>``); with the source's own ``source_id``/``name``."""
    m = matches.join(ids.select(pl.col("key").alias("to_key"), pl.col(id_col).alias("_to")), on="to_key", how="left")
    m = m.with_columns(pl.coalesce("id", "_to").alias("id"))
    m = m.join(incoming.select("key", "source_id", "name"), on="key", how="left")
    return schema.conform(m.with_columns(entity=pl.lit(entity)), STORE_ALIASES)


def lookup(entities: pl.DataFrame, aliases: pl.DataFrame, entity: str, id_col: str) -> pl.DataFrame:
    """``{key, <id_col>}`` of every key that names an entity: its own row or an alias."""
    a = aliases.filter(pl.col("entity") == entity).select("key", pl.col("id").alias(id_col))
    return pl.concat([entities.select("key", id_col), a])


def match_counts(aliases: pl.DataFrame) -> dict[str, int]:
    """``{"artists by name": n, ...}`` of newly written alias rows."""
    counts = aliases.group_by("entity", "rule").len().sort("entity", "rule")
    return {f"{e}s by {r}": n for e, r, n in counts.iter_rows()}


def commit_entities(store, inc, keep_apart: frozenset = frozenset()) -> tuple[dict, dict, dict[str, int]]:
    """Commit an ingest's artists and tracks with resolution (users as they are).

    Returns ``tables`` (name -> (table as committed, its rows before)), ``lookups`` (``users``,
    ``artists``, ``tracks`` -> ``{key, <id>}`` frames for every known key, aliases included) and
    the match counts of the keys resolved (``{"artists by name": n, ...}``).
    """
    from musicrec.store import writer
    from musicrec.store.merge import _first_non_null, _ids

    users, n_users = writer.commit_entities(store, "users", lambda: inc.users.frame().lazy())
    aliases = store.table("aliases")
    art_in = inc.artists.frame()
    stored = store.table("artists")
    fresh = new_artists(art_in, lookup(stored, aliases, "artist", "artist_id"))
    # names are compared only when something is new (a re-ingest reads no name)
    found = resolve(known_artists(stored, aliases), fresh, keep_apart) if fresh.height else _NONE
    # keys that are aliases (of before, or found now) are not entities of their own
    aliased = pl.concat([aliases.filter(pl.col("entity") == "artist").select("key"), found.select("key")])
    artists, n_artists = writer.commit_entities(
        store, "artists", lambda: art_in.join(aliased, on="key", how="anti").lazy())
    new_aliases = [alias_rows("artist", found, art_in, artists, "artist_id")]
    art_look = lookup(artists, pl.concat([aliases, new_aliases[0]]), "artist", "artist_id")

    tr_in = _first_non_null(_ids(inc.tracks_in(), "artist_key", art_look, "artist_id", "artist_id").select(
        "key", "source_id", "artist_id", "name", "duration_ms"), "key").collect()
    stored = store.table("tracks")
    fresh = new_tracks(tr_in, lookup(stored, aliases, "track", "track_id"))
    found = resolve(known_tracks(stored, aliases, tr_in["artist_id"]), fresh) if fresh.height else _NONE
    aliased = pl.concat([aliases.filter(pl.col("entity") == "track").select("key"), found.select("key")])
    tracks, n_tracks = writer.commit_entities(
        store, "tracks", lambda: tr_in.join(aliased, on="key", how="anti").lazy())
    new_aliases.append(alias_rows("track", found, tr_in, tracks, "track_id"))
    added = pl.concat(new_aliases)
    if added.height:
        writer.commit_replacing(store, "aliases", lambda old: pl.concat([old, added]).unique(
            ["entity", "key"], keep="first", maintain_order=True))
    aliases = pl.concat([aliases, added])
    tables = {"users": (users, n_users), "artists": (artists, n_artists), "tracks": (tracks, n_tracks)}
    lookups = {"users": users.select("key", "user_id"), "artists": art_look,
               "tracks": lookup(tracks, aliases, "track", "track_id")}
    return tables, lookups, match_counts(added)

