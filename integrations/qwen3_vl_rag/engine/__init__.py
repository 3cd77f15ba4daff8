"""The Qwen3-VL engine: the only part of the package that imports torch and transformers.

Public classes are re-exported lazily from :mod:`qwen3_vl_rag`; import them from there.
"""
