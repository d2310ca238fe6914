"""Public datasets musicrec knows how to fetch and verify.

``fetch(name, home)`` returns ``<home>/datasets/<name>/`` holding the dataset's files, verified
(present, sha256 and row counts where known). Files come from a local mirror folder when one is
given (``--from DIR`` / ``$MUSICREC_DATA_MIRROR``: ``DIR/<mirror_dir>/`` or ``DIR`` itself),
otherwise from the official URL. Files are copied into a temporary folder, verified, then the
folder is renamed into place, so a failed fetch never leaves a half-filled dataset folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from contextlib import nullcontext
from dataclasses import dataclass

from musicrec import MusicrecError


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset. ``rows``: data rows, i.e. non-empty lines minus ``header`` lines.
    ``url``: where this file alone is downloaded (for ``archive="files"`` datasets)."""

    name: str
    sha256: str | None = None
    rows: int | None = None
    header: int = 1
    url: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    url: str                     # the official download (archive) or home page
    archive: str                 # "zip", "tar.gz", or "files" (each FileSpec has its own url)
    mirror_dir: str              # folder name under a mirror folder
    files: tuple[FileSpec, ...]
    reader: str                  # name in musicrec.ingest.readers.READERS
    citation: str
    licence: str


_SLICES = "https://raw.githubusercontent.com/x775/skips-recommender/84c798e6cdea158df8984a1039e47d2306f82d0b/" \
        "solutions/ThirtyMusic/data/"
_1K_NOTE = "Last.fm 1K (Celma 2010), http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html; " \
           "reference the Last.fm website. Optional: Celma, O. Music Recommendation and Discovery in the " \
           "Long Tail, Springer 2010, ch. 3."
_1K_LICENCE = "Distributed with permission of Last.fm; non-commercial use only."

DATASETS: dict[str, DatasetSpec] = {
    "hetrec-lastfm-2k": DatasetSpec(
        name="hetrec-lastfm-2k",
        description="HetRec 2011 Last.fm 2K: 92,834 user-artist play counts (1,892 users), tags, friends",
        url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        archive="zip",
        mirror_dir="hetrec2011-lastfm-2k",
        files=(
            FileSpec("user_artists.dat", "254272fa721c3935e8be286d28c051b206844307128698ab4eaa41d483379416", 92834),
            FileSpec("artists.dat", "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648", 17632),
            FileSpec("tags.dat", "c815d7216101fd0ba9b9c59fa2a011998d2fd076e0064d281ec4153d95ae8095", 11946),
            FileSpec("user_taggedartists.dat", "c4a9ffae9ab47a9f9b2f0678ab1f7e5c1db4ca818837d8cddd1f5699c5bbf048",
                     186479),
            FileSpec("user_friends.dat", "0360883a3557776e04fdebda851f2e5dd23e796cad7059b968acdebd528d13fa", 25434),
        ),
        reader="hetrec-lastfm-2k",
        citation="Cantador, I., Brusilovsky, P., Kuflik, T. 2nd Workshop on Information Heterogeneity and Fusion "
                 "in Recommender Systems (HetRec 2011), RecSys 2011. Data from Last.fm (http://www.lastfm.com).",
        licence="Non-commercial use only (contact Last.fm for commercial use).",
    ),
    "30music-200ks-test": DatasetSpec(
        name="30music-200ks-test",
        description="30Music sessions (session-rec '200ks' slicing), 5 test slices: 121,547 plays in 9,519 "
                    "sessions by 4,620 users",
        # where these slices come from; the official 30Music page is http://recsys.deib.polimi.it/datasets/
        url="https://github.com/x775/skips-recommender/tree/84c798e6cdea158df8984a1039e47d2306f82d0b/"
            "solutions/ThirtyMusic/data",
        archive="files",
        mirror_dir="30music-200ks-test-slices",
        files=tuple(FileSpec(f"30music-200ks_test.{i}.txt", sha, rows, url=_SLICES + f"30music-200ks_test.{i}.txt")
                    for i, (sha, rows) in enumerate((
                        ("96391d05f6649e75abb369811e6faf540c47c71e18782505e6ca274eb78dc46a", 23718),
                        ("661e834fce99f415e95a9624bc69707d40d68ad2eddd3abec4f1434207a57c37", 21021),
                        ("113a942f101186ac7e9a6f58f987814d58de911e33859cd16877d232c4a650c2", 21226),
                        ("cb84d849c144660abe1e86fae3f9c790160ad023de78338cdbcceeed756c715e", 22796),
                        ("30453caca01c461f5471f4ec456c95abf6b85deb86134519b1bafe5e10fc0052", 32786),
                    ))),
        reader="30music",
        citation="Turrin, R., Quadrana, M., Condorelli, A., Pagano, R., Cremonesi, P. 30Music listening and "
                 "playlists dataset. RecSys 2015 Posters (CEUR-WS Vol-1441).",
        licence="Research / non-commercial use (see http://recsys.deib.polimi.it/datasets/).",
    ),
    "lastfm-1k-sample": DatasetSpec(
        name="lastfm-1k-sample",
        description="Last.fm 1K: first 5,000 scrobbles of the raw TSV and the 992-user profile file",
        url="http://ocelma.net/MusicRecommendationDataset/lastfm-1K.html",
        archive="files",
        mirror_dir="lastfm-1k-sample",
        files=(
            FileSpec("userid-timestamp-artid-artname-traid-traname.head5000.tsv",
                     "f8621569c658db3cc092899767fe70e08d578f5eafa40428dd14d74e5cfe006b", 5000, header=0,
                     url="https://raw.githubusercontent.com/myluco/lastfm/3d426884b0c31006a2c147468b5a6a548c62bd10/"
                         "data/userid-timestamp-artid-artname-traid-traname.tsv"),
            FileSpec("userid-profile.tsv", "b1a739ee14c1974d54a9073a1a37955bcfc9be31f29063ad8303de5c40d58fa3", 992,
                     url="https://raw.githubusercontent.com/franklinpinto20/sysrecsongs/"
                         "b5277cb966dc0df333a56afd9646b8f2eaf108ba/userid-profile.tsv"),
        ),
        reader="lastfm-1k",
        citation=_1K_NOTE,
        licence=_1K_LICENCE,
    ),
    "lastfm-1k": DatasetSpec(
        name="lastfm-1k",
        description="Last.fm 1K, full: 19,150,868 scrobbles of 992 users (641 MB download)",
        url="http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-1K.tar.gz",
        archive="tar.gz",
        mirror_dir="lastfm-1k",
        files=(
            FileSpec("userid-timestamp-artid-artname-traid-traname.tsv", None, 19150868, header=0),
            FileSpec("userid-profile.tsv", "b1a739ee14c1974d54a9073a1a37955bcfc9be31f29063ad8303de5c40d58fa3", 992),
        ),
        reader="lastfm-1k",
        citation=_1K_NOTE,
        licence=_1K_LICENCE,
    ),
}

_MARKER = ".musicrec-verified.json"
_BLANK = re.compile(rb"\n(?=\n)")                 # a newline right before another: a blank line


def spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a clear error lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise MusicrecError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None


def dataset_dir(name: str, home: str) -> str:
    return os.path.join(home, "datasets", name)


def is_cached(name: str, home: str) -> bool:
    """Whether ``fetch`` would return without copying (files present and verified before)."""
    return _marker_ok(spec(name), dataset_dir(name, home))


def reader_and_path(source: str, path: str | None, home: str) -> tuple[str, str]:
    """The reader and input of ``musicrec ingest SOURCE [PATH]``.

    ``source`` is a reader name or a dataset name (which stands for its reader). Without ``path``
    it must be a dataset, read from its fetched copy under ``home`` (``<home>/datasets/<name>/``),
    so the command is right wherever ``$MUSICREC_HOME`` points.
    """
    ds = DATASETS.get(source)
    if path is not None:
        return (ds.reader if ds else source), path
    if ds is None:
        raise MusicrecError(f"{source}: give the file or folder to read (only a dataset, {', '.join(DATASETS)}, "
                            "is read without one, from its fetched copy)")
    if not is_cached(source, home):
        raise MusicrecError(f"{source} is not fetched into {home} yet: run `musicrec datasets fetch {source}` "
                            "first (or give the PATH of a copy)")
    return ds.reader, dataset_dir(source, home)


# ---- verification -----------------------------------------------------------------------------

def count_rows(path: str, header: int = 1) -> int:
    """Non-empty lines of a text file minus ``header`` lines (streamed, any size)."""
    lines = blank = 0
    prev = b"\n"                                    # a blank first line counts as blank
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            lines += chunk.count(b"\n")
            blank += len(_BLANK.findall(chunk)) + (prev == b"\n" and chunk[:1] == b"\n")
            prev = chunk[-1:]
    if prev != b"\n":
        lines += 1                                  # a last line without a newline
    return max(lines - blank - header, 0)


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(ds: DatasetSpec, folder: str) -> None:
    """Raise ``MusicrecError`` naming the first file that is missing or differs."""
    for fs in ds.files:
        path = os.path.join(folder, fs.name)
        if not os.path.isfile(path):
            raise MusicrecError(f"{ds.name}: {fs.name} is missing")
        if fs.sha256 is not None:
            got = sha256_of(path)
            if got != fs.sha256:
                raise MusicrecError(f"{ds.name}: {fs.name} has sha256 {got[:12]}..., expected {fs.sha256[:12]}... "
                                    "(corrupt or different version)")
        if fs.rows is not None:
            got = count_rows(path, fs.header)
            if got != fs.rows:
                raise MusicrecError(f"{ds.name}: {fs.name} has {got:,} rows, expected {fs.rows:,}")


def _stat(folder: str, ds: DatasetSpec) -> dict:
    return {fs.name: os.path.getsize(os.path.join(folder, fs.name)) for fs in ds.files}


def _marker_ok(ds: DatasetSpec, folder: str) -> bool:
    try:
        with open(os.path.join(folder, _MARKER), encoding="utf-8") as f:
            return json.load(f) == {"dataset": ds.name, "sizes": _stat(folder, ds)}
    except (OSError, ValueError):
        return False


# ---- fetching ---------------------------------------------------------------------------------

def _from_mirror(ds: DatasetSpec, mirror: str, staging: str) -> None:
    candidates = [os.path.join(mirror, ds.mirror_dir), mirror]
    src = next((c for c in candidates if all(os.path.isfile(os.path.join(c, f.name)) for f in ds.files)), None)
    if src is None:
        missing = [f.name for f in ds.files if not os.path.isfile(os.path.join(candidates[0], f.name))]
        raise MusicrecError(f"{ds.name}: mirror {mirror} has no complete copy (looked in {candidates[0]} and "
                            f"{mirror}; missing {', '.join(missing)})")
    for fs in ds.files:
        shutil.copyfile(os.path.join(src, fs.name), os.path.join(staging, fs.name))


def _download(url: str, dest: str, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(dest, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with _progress(url, total) if progress else nullcontext((None, None)) as (p, task):
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
                    if p is not None:
                        p.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MusicrecError(f"could not download {url} ({reason}; no network?); pass --from DIR "
                            "or set MUSICREC_DATA_MIRROR") from None


class _progress:
    """A Rich download bar on stderr (only drawn on a terminal)."""

    def __init__(self, url: str, total: int | None):
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        self.p = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                          console=Console(stderr=True), transient=True)
        self.label, self.total = os.path.basename(url), total

    def __enter__(self):
        self.p.__enter__()
        return self.p, self.p.add_task(self.label, total=self.total)

    def __exit__(self, *exc):
        return self.p.__exit__(*exc)


def _extract(ds: DatasetSpec, archive: str, staging: str) -> None:
    """Copy the expected files (found by name anywhere in the archive) into ``staging``."""
    wanted = {f.name for f in ds.files}
    try:
        if ds.archive == "zip":
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    name = os.path.basename(info.filename)
                    if name in wanted and not info.is_dir():
                        with z.open(info) as src, open(os.path.join(staging, name), "wb") as out:
                            shutil.copyfileobj(src, out)
        else:
            with tarfile.open(archive, "r:*") as t:
                for member in t:
                    name = os.path.basename(member.name)
                    if name in wanted and member.isfile():
                        with t.extractfile(member) as src, open(os.path.join(staging, name), "wb") as out:
                            shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise MusicrecError(f"{ds.name}: downloaded archive is damaged ({exc})") from None


def _from_network(ds: DatasetSpec, staging: str, progress: bool) -> None:
    if ds.archive == "files":
        for fs in ds.files:
            _download(fs.url or ds.url, os.path.join(staging, fs.name), progress)
        return
    archive = os.path.join(staging, ".download")
    try:
        _download(ds.url, archive, progress)
        _extract(ds, archive, staging)
    finally:
        if os.path.exists(archive):
            os.remove(archive)


def fetch(name: str, home: str, mirror: str | None = None, progress: bool = True) -> str:
    """Local folder ``<home>/datasets/<name>/`` holding the verified files of dataset ``name``.

    Already there and verified: returned as is. Otherwise copied from ``mirror`` (a folder
    holding ``<mirror_dir>/`` or the files themselves), else downloaded from the official URL.
    """
    ds = spec(name)
    dest = dataset_dir(name, home)
    if _marker_ok(ds, dest):
        return dest
    if os.path.isdir(dest):
        try:                                        # present but never verified (copied by hand?)
            verify(ds, dest)
            _write_marker(ds, dest)
            return dest
        except MusicrecError:
            pass
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        if mirror:
            if not os.path.isdir(mirror):
                raise MusicrecError(f"mirror folder {mirror} does not exist")
            _from_mirror(ds, mirror, staging)
        else:
            _from_network(ds, staging, progress)
        verify(ds, staging)
        _write_marker(ds, staging)
        os.chmod(staging, 0o755)                    # mkdtemp makes it private
        if os.path.isdir(dest):
            shutil.rmtree(dest)                     # an unverifiable leftover
        os.rename(staging, dest)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _write_marker(ds: DatasetSpec, folder: str) -> None:
    with open(os.path.join(folder, _MARKER), "w", encoding="utf-8") as f:
        json.dump({"dataset": ds.name, "sizes": _stat(folder, ds)}, f)
