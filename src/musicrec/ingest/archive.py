"""Exports as delivered: a ``.zip`` (Spotify's ``my_spotify_data.zip``, a ListenBrainz export)
is read as the folder it unpacks to."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import zipfile
from pathlib import Path

from musicrec import MusicrecError

#: the most an unpacked zip may hold, in bytes (a real export is a few hundred MB at most)
MAX_UNZIPPED = 8 << 30
#: temporary folder -> the zip file it was unpacked from (for messages and the ingest log)
_UNPACKED: dict[str, str] = {}


def unpacked(path) -> Path:
    """``path`` itself, or for a ``.zip`` file (how Spotify and ListenBrainz deliver exports) a
    temporary folder holding its files, removed when the process ends. Members that would land
    outside the folder, and archives over ``MAX_UNZIPPED`` bytes, are refused."""
    p = Path(path)
    if not (p.is_file() and zipfile.is_zipfile(p)):
        return p
    try:
        with zipfile.ZipFile(p) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            if sum(m.file_size for m in members) > MAX_UNZIPPED:
                raise MusicrecError(f"{path}: the zip unpacks to more than {MAX_UNZIPPED >> 30} GiB; unpack it yourself")
            folder = Path(tempfile.mkdtemp(prefix="musicrec-zip-"))
            atexit.register(shutil.rmtree, folder, True)
            _UNPACKED[str(folder)] = str(p)
            for m in members:
                parts = [x for x in m.filename.replace("\\", "/").split("/") if x not in ("", ".")]
                if not parts or ".." in parts or m.filename.startswith(("/", "\\")) or ":" in parts[0]:
                    raise MusicrecError(f"{path}: member {m.filename!r} would unpack outside its folder")
                out = folder.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MusicrecError(f"{path}: not a readable zip file ({exc})") from None
    return folder


def shown_path(file) -> str:
    """``file`` as a user should see it: a file unpacked from a zip as ``<zip>/<member>``."""
    text = str(file)
    for folder, zip_path in _UNPACKED.items():
        if text == folder or text.startswith(folder + "/"):
            return zip_path + text[len(folder):]
    return text
