"""The canonical store of listening data (Delta Lake tables); see :mod:`musicrec.store.core`."""

from musicrec.store.buckets import by_bucket, user_bucket
from musicrec.store.core import DEFAULT_BUCKETS, SCHEMA_VERSION, TABLES, Store, ingest_path, read_play_partition
from musicrec.store.merge import PLAY_KEY, PLAY_ORDER, TAG_KEY, merge_entities, merge_plays, merge_tags
from musicrec.store.writer import IngestReport, fingerprint, merge_bucket

__all__ = ["DEFAULT_BUCKETS", "PLAY_KEY", "PLAY_ORDER", "SCHEMA_VERSION", "TABLES", "TAG_KEY", "IngestReport",
           "Store", "by_bucket", "fingerprint", "ingest_path", "merge_bucket", "merge_entities", "merge_plays",
           "merge_tags", "read_play_partition", "user_bucket"]
