"""HF <-> megatron conversion: one declared mapping table (`mapping.RULES`) read in both directions.

    import_hf(src, dst, tp=1, pp=1, preset=None)   llava-hf dir, or (CLIP dir, Llama dir) -> our checkpoint
    export_hf(src, dst)                             our checkpoint (any TP/PP) -> LlavaForConditionalGeneration dir
    export_trtllm(hf_dir, engine_dir, ...)          exported HF dir -> TensorRT-LLM engines (GPU + tensorrt_llm)

Modules: mapping (the table; its special cases are Mapping subclasses: QKV, gated MLP, class token, tied
output layer), sources (HF layouts and canonical names), hf_config (HF config <-> preset), hf_io (lazy
safetensors reads, planned shard writes), megatron_io (a rank's model, global names, dist_checkpointing
save, layer-by-layer reads via dcp_regions), importer, exporter, trtllm, layout (our checkpoint
directory); `python -m nemo_twvlm.conversion` is the command line. Imports are lazy: `import nemo_twvlm.conversion` does not import megatron.
"""
from nemo_twvlm.conversion.mapping import ConversionError


def import_hf(src, dst, **kwargs):
    from nemo_twvlm.conversion.importer import import_hf as run

    return run(src, dst, **kwargs)


def export_hf(src, dst, **kwargs):
    from nemo_twvlm.conversion.exporter import export_hf as run

    return run(src, dst, **kwargs)


def export_trtllm(hf_dir, engine_dir, **kwargs):
    from nemo_twvlm.conversion.trtllm import export_trtllm as run

    return run(hf_dir, engine_dir, **kwargs)


__all__ = ["ConversionError", "export_hf", "export_trtllm", "import_hf"]
