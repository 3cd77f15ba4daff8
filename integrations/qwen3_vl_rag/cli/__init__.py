"""The ``qwen3-vl-rag`` command line."""
