"""Serving: a model bundle (model + id mappings + names) that answers recommendation requests."""
