"""Readers: one module per source, each returning ``SourceTables`` (see ``base``)."""
