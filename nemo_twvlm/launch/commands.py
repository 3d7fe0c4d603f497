"""The commands of `nemo twvlm <command>`: typed functions, and the tables that say how the CLI treats
them (launch.cli serves them through NeMo-Run).

A new command is a function taking typed arguments, added to COMMANDS. A bad argument raises
`CommandError`, whose message names it; the CLI prints that one line. Each command imports what it
runs when it runs: --help, --dryrun and --to-yaml load none of it.
"""
import re
from pathlib import Path
from typing import Any, Callable, Optional

import fiddle as fdl
import nemo_run as run

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.launch.recipes import find_recipes
from nemo_twvlm.rundir import conf_dir, missing_local_path
from nemo_twvlm.training.config import PretrainConfig


def pretrain(cfg: PretrainConfig, nproc: int = 1) -> None:
    """Train a recipe (`--factory <recipe>`) with dotted overrides of its config.

    `nproc=N` starts N local ranks with torchrun; under a launcher that already started the ranks
    (Slurm executor, torchrun) it is ignored.
    """
    # Imported here: it pulls in megatron-core (~10 s), which --help, --dryrun and --to-yaml never need.
    from nemo_twvlm.launch.train import train

    train(cfg, nproc=nproc)


def check_pretrain(task: run.Partial, executor: run.Executor | None, nodes_given: bool) -> None:
    """Size the allocation from the recipe and validate the config against the world the executor will
    start, before the job waits in a queue (or, without an executor, before a dry run says it is fine).

    Nodes: `run.executor.nodes=N` if given, else the recipe's `parallel.num_gpus` / gpus per node, else
    the cluster file's. The checkpoint the run starts from is checked where it is on this machine: its
    tokenizer and vocabulary become the run's (training.lineage).
    """
    from nemo_twvlm.training.lineage import check_run
    from nemo_twvlm.training.validate import ConfigError

    cfg = fdl.build(task.cfg)
    par = cfg.parallel
    if executor is None:
        world = par.num_gpus or par.tensor_parallel * par.pipeline_parallel * par.context_parallel
    else:
        if par.num_gpus and not nodes_given and isinstance(executor, run.SlurmExecutor):
            per_node = executor.nproc_per_node()
            if par.num_gpus % per_node:
                raise ConfigError([f"parallel.num_gpus={par.num_gpus}: not a whole number of nodes of {per_node} "
                                   f"GPUs per node; set run.executor.nodes"])
            executor.nodes = par.num_gpus // per_node
        world = executor.nnodes() * executor.nproc_per_node()
    # Transformer Engine (fp8, context parallelism) is the container's business, not the login node's.
    cfg = check_run(cfg, world_size=world, local=executor is None or isinstance(executor, run.LocalExecutor),
                    te_available=True)
    if cfg.model.init_from and cfg.data.tokenizer:
        print(f"nemo_twvlm: starts from {cfg.model.init_from}: tokenizer {cfg.data.tokenizer}, "
              f"model.preset {cfg.model.preset}")


class CommandError(ValueError):
    """A command argument that cannot work; the message names the argument and its value."""


def _existing(field: str, value: str, what: str = "file or directory") -> str:
    if not value:
        raise CommandError(f"{field}={value!r}: expected a {what}")
    if not Path(value).exists():
        raise CommandError(f"{field}={value!r}: no such {what}")
    return value


def _local_or_hub(field: str, value: str) -> str:
    problem = missing_local_path(value)
    if problem:
        raise CommandError(f"{field}={value!r}: {problem}")
    return value


def demo(out_dir: str = "runs/demo") -> None:
    """Synthetic data -> debug align -> CPT -> SFT -> held-out probes (image vs blank; instruction following)."""
    from nemo_twvlm.launch.demo import run_demo

    try:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"out_dir={out_dir!r}: cannot be created ({error.strerror})") from None
    recipes = find_recipes("pretrain")
    run_demo(recipes["twvlm_debug_align"](), recipes["twvlm_debug_cpt"](), recipes["twvlm_debug_sft"](), out_dir)


def finding(out_dir: str = "runs/finding", seeds: str = "") -> None:
    """Issue 16's experiment, per seed: a text-instruction-aligned vs the base debug LM, each align -> CPT
    with no visual instructions, plus visual SFT for reference; one `finding:` line per seed (README).
    `seeds=1,2,3`: comma-separated positive integers (default: launch.finding.SEEDS)."""
    from nemo_twvlm.launch.finding import SEEDS, finding_recipes, run_finding

    try:
        chosen = tuple(int(seed) for seed in str(seeds).split(",")) if seeds else SEEDS
    except ValueError:
        chosen = ()
    if not chosen or min(chosen) < 1:
        raise CommandError(f"seeds={seeds!r}: expected positive integers separated by commas, e.g. 1,2,3")
    run_finding(*finding_recipes(), out_dir, chosen)


def chat(ckpt: str, image: str, prompt: str = "", max_new_tokens: int = 64, temperature: float = 0.0,
         top_p: float = 1.0, system: str = "") -> None:
    """Ask about an image (`prompt=...`), or chat interactively when no prompt is given; `system=...` is an
    optional system prompt."""
    _existing("ckpt", ckpt, "checkpoint directory")
    _existing("image", image, "image file")
    from nemo_twvlm.data.image import load_image
    from nemo_twvlm.inference.chat import ChatSession
    from nemo_twvlm.inference.generate import SamplingParams
    from nemo_twvlm.inference.loading import load_for_inference

    session = ChatSession(load_for_inference(ckpt), load_image(image),
                          SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p),
                          system=system or None)
    if prompt:
        print(session.ask(prompt))
        return
    print("Ask about the image; an empty line or Ctrl-D ends the chat.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        print(f"twvlm> {session.ask(line)}")


def plan(cfg: PretrainConfig, num_gpus: int = 0, mfu: float = 0.4) -> None:
    """Parameters, FLOPs per token, memory per GPU and run time of a recipe (`--factory <recipe>`).

    `num_gpus=0` means the recipe's parallel.num_gpus, or the smallest world its layout allows.
    """
    from nemo_twvlm.planner import format_plan, plan_from_config
    from nemo_twvlm.training.validate import validate

    if num_gpus < 0:
        raise CommandError(f"num_gpus={num_gpus}: expected 0 (the recipe's) or a positive number of GPUs")
    if not 0 < mfu <= 1:
        raise CommandError(f"mfu={mfu}: expected a fraction of peak in (0, 1]")
    par = cfg.parallel
    world = num_gpus or par.num_gpus or par.tensor_parallel * par.pipeline_parallel * par.context_parallel
    validate(cfg, world_size=world, te_available=True)  # the plan is for the GPU container
    print(format_plan(plan_from_config(cfg, num_gpus=world, mfu=mfu)))


def evaluate(ckpt: str, tasks: str, out_dir: str = "runs/eval", limit: Optional[int] = None,
             modes: str = "loglik,generate", max_new_tokens: int = 64, prompt_style: str = "chat",
             judge: Optional[str] = None, judge_model: Optional[str] = None) -> None:
    """Score a checkpoint on task files and the instruction-following probe -> out_dir/results.json + report.html.

    tasks: comma-separated PATH | mcq:PATH | open_qa:PATH | caption:PATH | if_probe | if_probe:SHARD_DIR
           | vistw_mcq:DIR | vistw_dialogue:DIR | taiwanvqa:DIR | vlmeval_mcq:TSV (published layouts)
    judge: scores vistw_dialogue: an OpenAI-compatible endpoint URL (model judge_model) or a checkpoint DIR
    """
    _existing("ckpt", ckpt, "checkpoint directory")
    from nemo_twvlm.evaluation.harness import cli_evaluate

    cli_evaluate(ckpt, tasks, out_dir=out_dir, limit=limit, modes=modes, max_new_tokens=max_new_tokens,
                 prompt_style=prompt_style, judge=judge, judge_model=judge_model)


def import_hf(src: str = "", dst: str = "", tp: int = 1, pp: int = 1, preset: str = "", clip: str = "",
              llama: str = "", tokenizer: str = "", image_token: str = "reserved") -> None:
    """HF LLaVA dir (or clip=DIR llama=DIR) -> our distributed checkpoint at dst, split tp x pp ways.

    Each source is a local directory or a hub id. image_token: how <image> enters a tokenizer without one
    (Llama-3's): `reserved` (a reserved special token; the vocabulary keeps its 128,256 ids) or `append`
    (a new id; rows grow to a multiple of 64)."""
    from nemo_twvlm.conversion import import_hf as run_import

    if not ((src and not clip and not llama) or (not src and clip and llama)):
        raise CommandError(f"src={src!r} clip={clip!r} llama={llama!r}: give either src=LLAVA_DIR or both "
                           f"clip=DIR and llama=DIR")
    if not dst:
        raise CommandError("dst='': expected the directory to write the checkpoint to")
    sources = {"src": src} if src else {"clip": clip, "llama": llama}
    for field, value in sources.items():
        _local_or_hub(field, value)
    preset_used = run_import(src or (clip, llama), dst, tp=tp, pp=pp, preset=preset or None,
                             tokenizer=tokenizer or None, image_token=image_token)
    print(f"import_hf: {dst} (preset {preset_used.name}, tp={tp}, pp={pp})")


def export_hf(src: str, dst: str, max_shard_size: str = "5GB") -> None:
    """Our checkpoint (any TP/PP) -> a transformers LlavaForConditionalGeneration directory."""
    from nemo_twvlm.conversion import export_hf as run_export

    print(f"export_hf: {run_export(_existing('src', src, 'checkpoint directory'), dst, max_shard_size=max_shard_size)}")


def export_trtllm(hf_dir: str, engine_dir: str, dtype: str = "bfloat16", tp: int = 1, max_batch_size: int = 1,
                  max_input_len: int = 2048) -> None:
    """An export_hf directory -> TensorRT-LLM engines (needs a GPU and tensorrt_llm)."""
    from nemo_twvlm.conversion import export_trtllm as run_export

    out = run_export(_existing("hf_dir", hf_dir, "export_hf directory"), engine_dir, dtype=dtype, tp=tp,
                     max_batch_size=max_batch_size, max_input_len=max_input_len)
    print(f"export_trtllm: {out}")


def curate(cfg: Optional[CurationConfig] = None) -> None:
    """Curate raw pairs / interleaved documents / visual instructions into Energon shards (the config has no
    default: --factory is required).

    `--factory NAME`: a recipe (`curate_pairs_zh_tw`) or a YAML in conf/curation by name (`pairs_laion`),
    then its fields as dotted overrides: `input_dir=IN output_dir=OUT executor.name=xenna`.
    """
    from nemo_twvlm.curation.cli import run_config

    run_config(cfg)


def curate_plan(cfg: Optional[CurationConfig] = None, samples: int = 0, nodes: int = 0, cores_per_node: int = 0,
                memory_gb: float = 0.0, image_px: int = 512, images_per_sample: float = 1.0,
                text_chars: int = 0) -> None:
    """CPU time per stage, wall time, disk and memory per node of curating `samples` samples with a curation
    config (`--factory NAME` and overrides, as for curate) on a cluster, from measured per-sample costs.

    `run.executor=slurm_cpu` takes nodes, cores and memory per node from that cluster file (nothing is
    submitted); nodes=, cores_per_node=, memory_gb= give or override them. image_px: the inputs' typical side;
    text_chars: their characters of text per sample (0: a caption per image; give it for documents).
    """
    from nemo_twvlm.curation.plan import format_curation_plan, plan_curation

    for field, value in (("nodes", nodes), ("cores_per_node", cores_per_node)):
        if value < 1:
            raise CommandError(f"{field}={value}: expected >= 1 (or run.executor=NAME, a cluster file that sets it)")
    if memory_gb < 0:
        raise CommandError(f"memory_gb={memory_gb}: expected GiB per node > 0, or 0 when not known")
    cfg.check(paths=False)
    try:
        found = plan_curation(cfg, samples=samples, nodes=nodes, cores_per_node=cores_per_node, image_px=image_px,
                              images_per_sample=images_per_sample, memory_per_node=memory_gb * 2**30 or None,
                              text_chars=text_chars or None)
    except ValueError as error:
        raise CommandError(str(error)) from None
    print(format_curation_plan(found))


def size_from_executor(task: run.Partial, executor: run.Executor | None) -> None:
    """A plan is sized by the cluster a run would get: the executor's nodes, cores and memory fill the
    arguments left at 0; the plan itself runs here, never on the executor."""
    if not isinstance(executor, run.SlurmExecutor):
        return
    cluster = {"nodes": executor.nodes, "cores_per_node": (executor.cpus_per_task or 1) * executor.ntasks_per_node,
               "memory_gb": _slurm_memory_gb(executor.mem)}
    for field, value in cluster.items():
        if not getattr(task, field, 0) and value:
            setattr(task, field, value)


def _slurm_memory_gb(mem: str | None) -> float:
    """sbatch --mem (MB by default; K/M/G/T suffixes) in GiB; "0" means all of the node's, unknown here."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", str(mem or "0").strip().upper())
    if not match:
        raise CommandError(f"run.executor.mem={mem!r}: expected sbatch's form, e.g. 256G or 262144")
    return float(match[1]) * {"K": 2**-20, "": 2**-10, "M": 2**-10, "G": 1, "T": 2**10}[match[2]]


COMMANDS: dict[str, Callable[..., Any]] = {
    "pretrain": pretrain, "plan": plan, "demo": demo, "finding": finding, "chat": chat, "evaluate": evaluate,
    "import_hf": import_hf, "export_hf": export_hf, "export_trtllm": export_trtllm, "curate": curate,
    "curate_plan": curate_plan,
}

# `<command> --plan ...` runs the plan command instead.
PLAN_FLAGS: dict[str, Callable[..., Any]] = {"curate": curate_plan}

# Commands sized by `run.executor=NAME` that run here: the executor describes the cluster, it launches nothing.
SIZED_BY_EXECUTOR: dict[str, Callable[[run.Partial, run.Executor | None], None]] = {"curate_plan": size_from_executor}

# Run before submitting to a remote executor, and by dry runs; local runs validate as they start.
REMOTE_CHECKS: dict[str, Callable[[run.Partial, run.Executor, bool], None]] = {"pretrain": check_pretrain}

# Commands that a Slurm executor runs once on a Ray cluster spanning its nodes (launch.ray_cluster), not
# once per node as NeMo-Run's Slurm jobs do.
ON_RAY_CLUSTER = ("curate",)


def curation_factories() -> dict[str, Callable[[], CurationConfig]]:
    """What `curate --factory NAME` builds: the curation recipes, and every conf/curation YAML by name."""
    from nemo_twvlm.curation.cli import compose_config

    def from_yaml(path: Path) -> Callable[[], CurationConfig]:
        def compose() -> CurationConfig:
            return compose_config(path.stem, [], check=False)

        compose.__doc__ = f"{path} as it is."
        return compose

    return {**{path.stem: from_yaml(path) for path in sorted((conf_dir() / "curation").glob("*.yaml"))},
            **find_recipes("curate")}


def command_recipes() -> dict[str, dict[str, Callable[[], Any]]]:
    """What `--factory NAME` builds for each command: a task per recipe."""
    pretrain = find_recipes("pretrain")
    curation = curation_factories()
    return {"pretrain": pretrain, "plan": pretrain, "curate": curation, "curate_plan": curation}
