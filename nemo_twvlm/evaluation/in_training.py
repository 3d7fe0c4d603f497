"""What in-training evaluation scores, built for a run: the text-retention suite (data.retention_path)
and the instruction-following probe (data.probe_path), both on the model megatron is training.

`scorer_for(cfg)` is the `scorer_factory` that `nemo_twvlm.launch.train` hands to the training loop
(training.in_training_eval runs it at each evaluation and before the first step). Sets are read and
tokenized once, when the factory runs, so a bad file fails before megatron starts.
"""
from __future__ import annotations

from nemo_twvlm.training.config import PretrainConfig

# Short answers keep the probe cheap inside a training job; the probe's constraints need no more.
PROBE_MAX_NEW_TOKENS = 24


def scorer_for(cfg: PretrainConfig):
    from nemo_twvlm.data.tokenizer import image_token_id, load_tokenizer
    from nemo_twvlm.presets import get_preset
    from nemo_twvlm.rundir import resolve_local

    tokenizer = load_tokenizer(resolve_local(cfg.data.tokenizer))
    preset = get_preset(cfg.model.preset)
    image_token_index = image_token_id(tokenizer)
    suites = []
    if cfg.data.retention_path:
        from nemo_twvlm.evaluation.retention import RetentionScorer, RetentionSet

        suites.append(RetentionScorer(RetentionSet.read(cfg.data.retention_path), tokenizer,
                                      image_token_index=image_token_index, num_image_tokens=preset.num_image_tokens))
    if cfg.data.probe_path:
        from nemo_twvlm.evaluation.attribute_probe import read_probe_samples

        samples = read_probe_samples(cfg.data.probe_path, cfg.data.probe_images)
        suites.append(_Probe(samples, tokenizer, preset, image_token_index))

    def score(model) -> dict[str, float]:
        scores: dict[str, float] = {}
        for suite in suites:
            scores.update(suite(model))
        return scores

    return score


class _Probe:
    def __init__(self, samples, tokenizer, preset, image_token_index: int):
        self.samples, self.tokenizer, self.preset, self.image_token_index = samples, tokenizer, preset, image_token_index

    def __call__(self, model) -> dict[str, float]:
        from nemo_twvlm.evaluation.instruction_following import run_probe

        rates = run_probe(model, self.tokenizer, self.preset, self.samples, image_token_index=self.image_token_index,
                          max_new_tokens=PROBE_MAX_NEW_TOKENS)
        return {f"if_probe/{name}": rate for name, rate in rates.items()}
