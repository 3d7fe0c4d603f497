"""Tokenizer loading: any local Hugging Face tokenizer directory (or hub id in production)."""
from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    # Custom tokenizer code from a checkpoint is never executed.
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer at {path} defines no bos/eos token; both are needed for training")
    return tokenizer
