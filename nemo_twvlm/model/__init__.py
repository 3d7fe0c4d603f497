"""Preset -> megatron-core LLaVAModel (llava.py) and the per-stage freeze plans (freeze.py).

Nothing is re-exported here, so that reading the freeze plans does not import megatron-core.
"""
