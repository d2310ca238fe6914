"""musicrec: music recommendation from raw listening logs.

The package follows the data flow: ``ingest`` (one reader per source) -> ``store``
(canonical Delta Lake tables) -> ``preprocess`` (clean, sessionise, split) -> ``features``
(id vocabularies, interaction matrices, sequences) -> ``models`` (one file per model,
explicit registry) -> ``train`` (tuning) -> ``evaluate`` (metrics, protocols, reports).
The CLI in ``musicrec.cli`` is a thin layer over these modules.
"""

__version__ = "0.1.0"


class MusicrecError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
