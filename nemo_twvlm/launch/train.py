"""The training entry with in-training evaluation: megatron.training's loop (training.pretrain) given
the evaluation layer's scorers, which training itself may not import.

`python -m nemo_twvlm.launch.train CONFIG.json` is what `nemo twvlm pretrain` and the demo run; every
torchrun rank runs it too.
"""
from __future__ import annotations

from nemo_twvlm.training.config import PretrainConfig

# Spelled out: run with -m, this module's __name__ is "__main__".
ENTRY = "nemo_twvlm.launch.train"


def train(cfg: PretrainConfig, *, nproc: int = 1) -> None:
    from nemo_twvlm.evaluation.in_training import scorer_for
    from nemo_twvlm.training.pretrain import run_pretrain

    run_pretrain(cfg, nproc=nproc, scorer_factory=scorer_for, entry=ENTRY)


def main(argv: list[str] | None = None) -> None:
    from nemo_twvlm.evaluation.in_training import scorer_for
    from nemo_twvlm.training.pretrain import main as training_main

    training_main(argv, scorer_factory=scorer_for, entry=ENTRY)


if __name__ == "__main__":
    main()
