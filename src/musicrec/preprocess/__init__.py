"""Preprocess: clean, filter, sessionise and split canonical plays."""
