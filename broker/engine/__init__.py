"""The broker engine: commands in, one scheduling cycle at a time, state in the store (see engine.py)."""
