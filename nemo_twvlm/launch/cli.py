"""`nemo twvlm <command>`: a table from command name to a typed function, served by NeMo-Run.

    nemo twvlm pretrain --factory twvlm_debug trainer.max_steps=20 --yes      # in-process
    nemo twvlm pretrain --factory twvlm_debug run.executor=local --yes        # venv subprocess
    nemo twvlm pretrain --factory twvlm_70b_cpt_128gpu run.executor=slurm_h100 --dryrun      # 16 nodes
    nemo twvlm pretrain --factory twvlm_debug data.seq_length=512 --to-yaml cfg.yaml
    nemo twvlm curate --factory curate_pairs_zh_tw input_dir=IN output_dir=OUT executor.name=xenna
    python -m nemo_twvlm.launch.cli pretrain ...                              # same, without `nemo`

`--factory` takes any recipe name in `recipes.RECIPES` (pretrain, plan) or `recipes.CURATE_RECIPES`
(curate). Overrides address the config directly
(`trainer.max_steps=20` means `cfg.trainer.max_steps=20`). `run.executor=<name>` picks
`<conf>/cluster/<name>.yaml`, where `<conf>` is `$TWVLM_CONF` or `./conf`; `local` always exists.
Without `run.executor` the task runs in this process.

A new command is a function taking typed arguments, added to COMMANDS.
"""
import dataclasses
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Optional, get_args, get_type_hints

import fiddle as fdl
import nemo_run as run

from nemo_twvlm.curation.config import CurationConfig
from nemo_twvlm.launch.executors import load_executor, local_executor
from nemo_twvlm.training.config import PretrainConfig
from recipes import CURATE_RECIPES, RECIPES

NAMESPACE = "twvlm"


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
    from nemo_twvlm.training.lineage import resolve_start
    from nemo_twvlm.training.validate import ConfigError, validate

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
    cfg = resolve_start(cfg, local=executor is None or isinstance(executor, run.LocalExecutor))
    if cfg.model.init_from and cfg.data.tokenizer:
        print(f"nemo_twvlm: starts from {cfg.model.init_from}: tokenizer {cfg.data.tokenizer}, "
              f"model.preset {cfg.model.preset}")
    # Transformer Engine (fp8, context parallelism) is the container's business, not the login node's.
    validate(cfg, world_size=world, te_available=True)


def demo(out_dir: str = "runs/demo") -> None:
    """Synthetic data -> debug align -> CPT -> SFT -> held-out probes (image vs blank; instruction following)."""
    from nemo_twvlm.launch.demo import run_demo

    run_demo(RECIPES["twvlm_debug_align"](), RECIPES["twvlm_debug_cpt"](), RECIPES["twvlm_debug_sft"](), out_dir)


def chat(ckpt: str, image: str, prompt: str = "", max_new_tokens: int = 64, temperature: float = 0.0,
         top_p: float = 1.0, system: str = "") -> None:
    """Ask about an image (`prompt=...`), or chat interactively when no prompt is given; `system=...` is an
    optional system prompt."""
    from nemo_twvlm.inference.chat import ChatSession, load_image
    from nemo_twvlm.inference.generate import SamplingParams
    from nemo_twvlm.training.checkpoint import load_for_inference

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
    from nemo_twvlm.evaluation.harness import cli_evaluate

    cli_evaluate(ckpt, tasks, out_dir=out_dir, limit=limit, modes=modes, max_new_tokens=max_new_tokens,
                 prompt_style=prompt_style, judge=judge, judge_model=judge_model)


def import_hf(src: str = "", dst: str = "", tp: int = 1, pp: int = 1, preset: str = "", clip: str = "",
              llama: str = "", tokenizer: str = "", image_token: str = "reserved") -> None:
    """HF LLaVA dir (or clip=DIR llama=DIR) -> our distributed checkpoint at dst, split tp x pp ways.

    image_token: how <image> enters a tokenizer without one (Llama-3's): `reserved` (a reserved special
    token; the vocabulary keeps its 128,256 ids) or `append` (a new id; rows grow to a multiple of 64)."""
    from nemo_twvlm.conversion import ConversionError, import_hf as run_import

    try:
        run_import(src or (clip, llama), dst, tp=tp, pp=pp, preset=preset or None, tokenizer=tokenizer or None,
                   image_token=image_token)
    except ConversionError as error:
        raise SystemExit(f"import_hf: {error}") from None


def export_hf(src: str, dst: str, max_shard_size: str = "5GB") -> None:
    """Our checkpoint (any TP/PP) -> a transformers LlavaForConditionalGeneration directory."""
    from nemo_twvlm.conversion import ConversionError, export_hf as run_export

    try:
        run_export(src, dst, max_shard_size=max_shard_size)
    except ConversionError as error:
        raise SystemExit(f"export_hf: {error}") from None


def export_trtllm(hf_dir: str, engine_dir: str, dtype: str = "bfloat16", tp: int = 1, max_batch_size: int = 1,
                  max_input_len: int = 2048) -> None:
    """An export_hf directory -> TensorRT-LLM engines (needs a GPU and tensorrt_llm)."""
    from nemo_twvlm.conversion import ConversionError, export_trtllm as run_export

    try:
        run_export(hf_dir, engine_dir, dtype=dtype, tp=tp, max_batch_size=max_batch_size,
                   max_input_len=max_input_len)
    except ConversionError as error:
        raise SystemExit(f"export_trtllm: {error}") from None


def curate(config: str = "", input_dir: str = "", output_dir: str = "", overrides: str = "",
           cfg: Optional[CurationConfig] = None) -> None:
    """Curate raw pairs / interleaved documents into Energon shards, from a recipe or a YAML by name.

    `--factory curate_pairs_zh_tw input_dir=IN output_dir=OUT executor.name=xenna`: a recipe, with
    dotted overrides of its fields. `config=pairs_zh_tw input_dir=IN output_dir=OUT
    overrides="executor.name=xenna"`: conf/curation/<config>.yaml with Hydra overrides (space-separated).
    """
    from nemo_twvlm.curation.cli import curate as run_curate, run_config

    if cfg is None:
        run_curate(config or "pairs_zh_tw", input_dir, output_dir, overrides.split())
        return
    if config or overrides:
        raise ValueError(f"curate: config={config!r} / overrides={overrides!r} do not combine with --factory, "
                         "which gives the whole config; override its fields directly (executor.name=xenna)")
    run_config(dataclasses.replace(cfg, input_dir=input_dir or cfg.input_dir, output_dir=output_dir or cfg.output_dir))


COMMANDS: dict[str, Callable[..., Any]] = {
    "pretrain": pretrain, "plan": plan, "demo": demo, "chat": chat, "evaluate": evaluate,
    "import_hf": import_hf, "export_hf": export_hf, "export_trtllm": export_trtllm, "curate": curate,
}

# Run before submitting to a remote executor, and by dry runs; local runs validate as they start.
REMOTE_CHECKS: dict[str, Callable[[run.Partial, run.Executor, bool], None]] = {"pretrain": check_pretrain}

# What `--factory NAME` builds for each command: a task per recipe.
COMMAND_RECIPES: dict[str, dict[str, Callable[[], Any]]] = {
    "pretrain": RECIPES, "plan": RECIPES, "curate": CURATE_RECIPES,
}


def conf_dir() -> Path:
    return Path(os.environ.get("TWVLM_CONF", "conf"))


def to_config(value: Any) -> Any:
    """A dataclass tree as nested `run.Config`s, so the CLI can override and serialize any field."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: to_config(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return run.Config(type(value), **fields)
    return value


class TwvlmRunContext(run.cli.RunContext):
    """NeMo-Run's run context with a few additions for commands that take a single config.

    - Bare overrides (`trainer.max_steps=20`) are read as `cfg.trainer.max_steps=20`.
    - Without `--name`, the run (experiment directory, Slurm job) is named after the config's
      `name`, i.e. the recipe, rather than after the command.
    - Before a remote executor launches (or dry-runs), REMOTE_CHECKS[command] checks the task (and,
      for pretrain, sizes the Slurm allocation from the recipe's parallel.num_gpus).
    - An unknown `run.executor=NAME` lists the executors that exist.
    - `--dryrun` with `run.executor=...` also prints what the executor would launch (for Slurm,
      the sbatch script); NeMo-Run's task dry run shows only the arguments and executor fields.
    """

    def parse_fn(self, fn, args, **default_kwargs):
        root = config_arg(fn)
        if root is not None:
            args = qualify_overrides(root, fn, args)
        self._task = super().parse_fn(fn, args, **default_kwargs)
        if root is not None and self.name == fn.__name__:
            self.name = getattr(getattr(self._task, root), "name", self.name)
        check = REMOTE_CHECKS.get(fn.__name__)
        remote = self.executor is not None and not isinstance(self.executor, run.LocalExecutor)
        if check and (remote or self.dryrun):
            check(self._task, self.executor, getattr(self, "_nodes_given", False))
        return self._task

    def parse_executor(self, name, *args):
        self._nodes_given = any(arg.split("=", 1)[0].strip() == "nodes" for arg in args)
        try:
            return super().parse_executor(name, *args)
        except ValueError:
            cluster_dir = conf_dir() / "cluster"
            known = sorted({"local", *(p.stem for p in cluster_dir.glob("*.yaml"))})
            raise ValueError(
                f"run.executor={name!r} is not an executor; expected one of {known} "
                f"('local' or a file in {cluster_dir.resolve()}; $TWVLM_CONF moves the conf directory)"
            ) from None

    # Overrides a private NeMo-Run 0.11.1 method: it is the only hook between parsing and launching.
    def _execute_task(self, fn, task_args):
        super()._execute_task(fn, task_args)
        exporting = any([self.to_yaml, self.to_toml, self.to_json])
        if self.dryrun and self.executor is not None and not exporting:
            with run.Experiment(self.name, executor=self.executor) as experiment:
                experiment.add(self._task, name=self.name)
                experiment.dryrun()


def config_arg(fn: Callable) -> str | None:
    """The name of `fn`'s one dataclass-typed (or Optional dataclass) argument, if it has exactly one."""
    hints = get_type_hints(fn)
    configs = [name for name in inspect.signature(fn).parameters if config_type(hints.get(name))]
    return configs[0] if len(configs) == 1 else None


def config_type(hint: Any) -> type | None:
    """The dataclass a hint names, `Optional[...]` unwrapped."""
    if dataclasses.is_dataclass(hint):
        return hint
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if len(args) == 1 and dataclasses.is_dataclass(args[0]) else None


def qualify_overrides(root: str, fn: Callable, args: list[str]) -> list[str]:
    """Prefix `<root>.` to overrides whose first segment is a field of that config, not an argument of `fn`."""
    params = inspect.signature(fn).parameters
    fields = {f.name for f in dataclasses.fields(config_type(get_type_hints(fn)[root]))}
    qualified = []
    for arg in args:
        head = re.match(r"[A-Za-z_]\w*", arg)
        if head and head.group() in fields and head.group() not in params:
            arg = f"{root}.{arg}"
        qualified.append(arg)
    return qualified


def _register_commands() -> None:
    for name, command in COMMANDS.items():
        run.cli.entrypoint(command, namespace=NAMESPACE, run_ctx_cls=TwvlmRunContext)
        for recipe_name, recipe in COMMAND_RECIPES.get(name, {}).items():
            _register_recipe(command, recipe_name, recipe)


def _register_recipe(command: Callable, name: str, recipe: Callable[[], Any]) -> None:
    arg = config_arg(command)

    def task() -> run.Partial:
        return run.Partial(command, **{arg: to_config(recipe())})

    task.__name__ = task.__qualname__ = name  # what `--help` lists
    task.__doc__ = recipe.__doc__
    run.cli.factory(task, target=command, name=name)


def _register_executors(conf: Path) -> None:
    run.cli.factory(local_executor, target=run.Executor, name="local")
    for path in sorted((conf / "cluster").glob("*.yaml")):
        _register_cluster_file(path)


def _register_cluster_file(path: Path) -> None:
    def executor() -> run.Config[run.Executor]:
        return load_executor(path)

    executor.__name__ = executor.__qualname__ = path.stem
    executor.__doc__ = f"Executor described by {path}."
    run.cli.factory(executor, target=run.Executor, name=path.stem)


_register_commands()
_register_executors(conf_dir())


def main(argv: list[str] | None = None) -> int:
    """`python -m nemo_twvlm.launch.cli <command> ...`, the same as `nemo twvlm <command> ...`."""
    from nemo_run.cli.api import create_cli

    sys.argv = [sys.argv[0], NAMESPACE, *(sys.argv[1:] if argv is None else argv)]
    return create_cli()(standalone_mode=False) or 0


if __name__ == "__main__":
    sys.exit(main())
