"""`nemo twvlm <command> key=value ...`: a table from command name to a typed function, served by NeMo-Run.

    nemo twvlm pretrain --factory twvlm_debug trainer.max_steps=20 --yes      # in-process
    nemo twvlm pretrain --factory twvlm_debug run.executor=local --yes        # venv subprocess
    nemo twvlm pretrain --factory twvlm_70b_cpt_128gpu run.executor=slurm_h100 --dryrun      # 16 nodes
    nemo twvlm pretrain --factory twvlm_debug data.seq_length=512 --to-yaml cfg.yaml
    nemo twvlm curate --factory curate_pairs_zh_tw input_dir=IN output_dir=OUT executor.name=xenna
    nemo twvlm curate --factory curate_pairs_zh_tw_cluster --plan samples=50000000 run.executor=slurm_cpu nodes=16
    python -m nemo_twvlm.launch.cli pretrain ...                              # same, without `nemo`

This is the one command line: `python -m nemo_twvlm.conversion ...` and `python -m nemo_twvlm.curation
--config-name NAME ...` forward to it. `--factory` takes any recipe name of the command's kind in
`launch.recipes.find_recipes` (`pretrain` for pretrain and plan, `curate` for curate and curate_plan); curate
also takes the name of any conf/curation YAML. The curation plan is its own command, as training's is
(`curate_plan`: its arguments mean nothing to a curation run); `curate ... --plan` is the same command,
since NeMo-Run passes unknown --options through to `cli_execute` (it would otherwise drop `--plan`
silently and curate). Overrides address the config
directly (`trainer.max_steps=20` means `cfg.trainer.max_steps=20`). `run.executor=<name>` picks
`<conf>/cluster/<name>.yaml` (`rundir.conf_dir`: `$TWVLM_CONF`, else the repository's conf/, from any
working directory); `local` always exists. Without `run.executor` the task runs in this process.

Nothing is registered on import: `register()` (run by `main()`, and by NeMo-Run's plugin hook
`launch.plugin`) adds the commands, recipes and executors. A failing command prints one line naming what
was wrong and exits 1, never a traceback (`-v` shows it).

The commands themselves, and the tables saying which are planned, sized or checked before submission,
are in launch.commands.
"""
import dataclasses
import difflib
import functools
import inspect
import logging
import re
import sys
from pathlib import Path
from typing import Any, Callable, get_args, get_type_hints

import nemo_run as run
import typer
from nemo_run.cli.api import RunContextError
from nemo_run.cli.cli_parser import CLIException

from nemo_twvlm.launch.commands import (
    COMMANDS, ON_RAY_CLUSTER, PLAN_FLAGS, REMOTE_CHECKS, SIZED_BY_EXECUTOR, CommandError, command_recipes,
)
from nemo_twvlm.launch.executors import load_executor, local_executor
from nemo_twvlm.rundir import conf_dir

NAMESPACE = "twvlm"


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
    - ON_RAY_CLUSTER commands with a Slurm executor submit one Ray-cluster job (launch.ray_cluster).
    """

    def parse_fn(self, fn, args, **default_kwargs):
        root = config_arg(fn)
        if root is not None and inspect.signature(fn).parameters[root].default is None and not self.factory:
            raise CommandError(f"{fn.__name__}: no {root}; give --factory with one of "
                               f"{sorted(command_recipes().get(fn.__name__, {}))}")
        if root is not None:
            args = qualify_overrides(root, fn, args)
        self._task = super().parse_fn(fn, args, **default_kwargs)
        if root is not None and self.name == fn.__name__:
            self.name = getattr(getattr(self._task, root), "name", self.name)
        if fn.__name__ in SIZED_BY_EXECUTOR:
            SIZED_BY_EXECUTOR[fn.__name__](self._task, self.executor)
            self.executor = None
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

    def cli_execute(self, fn, args, entrypoint_type="task"):
        if "--plan" in args and fn.__name__ in PLAN_FLAGS:  # NeMo-Run hands unknown --options through
            fn, args = PLAN_FLAGS[fn.__name__], [arg for arg in args if arg != "--plan"]
        _refuse_unknown_options(fn.__name__, args)
        # NeMo-Run prints anything but a RunContextError as "Unexpected error: {error}", which is empty for a
        # declined or impossible confirmation and dumps whole configs for a bad override.
        # It also logs each parse error with the whole config before raising it; the raised one is reported.
        logging.getLogger("nemo_run.cli.cli_parser").setLevel(logging.CRITICAL)
        try:
            return super().cli_execute(fn, args, entrypoint_type)
        except typer.Abort:
            raise RunContextError(f"{fn.__name__}: not confirmed (pass --yes to run without asking)") from None
        except RunContextError:
            raise
        except Exception as error:
            raise RunContextError(error_message(fn.__name__, error)) from error

    # Overrides a private NeMo-Run 0.11.1 method: it is the only hook between parsing and launching.
    def _execute_task(self, fn, task_args):
        exporting = any([self.to_yaml, self.to_toml, self.to_json])
        if fn.__name__ in ON_RAY_CLUSTER and isinstance(self.executor, run.SlurmExecutor) and not exporting:
            return self._execute_on_ray_cluster(fn, task_args)
        super()._execute_task(fn, task_args)
        if self.dryrun and self.executor is not None and not exporting:
            with run.Experiment(self.name, executor=self.executor) as experiment:
                experiment.add(self._task, name=self.name)
                experiment.dryrun()

    def _execute_on_ray_cluster(self, fn, task_args):
        from nemo_twvlm.launch.ray_cluster import launch_curation

        task = self.parse_fn(fn, task_args)
        # The cluster's directory and Slurm job are named after the recipe, as training's are (or --name); NeMo-Run
        # reuses a running cluster of the same name instead of starting one, so recipes must not share "curate".
        name = self.factory if self.name == fn.__name__ else self.name
        run.dryrun_fn(task, executor=self.executor)  # the config and executor, as NeMo-Run's dry run shows them
        if self.dryrun:
            launch_curation(task, self.executor, name, dryrun=True)
        elif self._should_continue(self.skip_confirmation):
            job_id = launch_curation(task, self.executor, name, dryrun=False)
            print(f"{fn.__name__}: Slurm job {job_id} ({self.executor.nodes} nodes, one Ray cluster)")


# What NeMo-Run reads from sys.argv itself rather than declaring as an option.
_UNDECLARED_FLAGS = ("--lazy",)


def _refuse_unknown_options(command: str, args: list[str]) -> None:
    """NeMo-Run's commands accept unknown options so that overrides pass through, and then drop them: a
    misspelt `--dryrun` would launch the run. Refused instead, by name, with the nearest option."""
    unknown = [arg for arg in args if arg.startswith("-") and arg.split("=", 1)[0] not in _UNDECLARED_FLAGS]
    if not unknown:
        return
    context = typer.main.get_current_context(silent=True)
    params = context.command.params if context else []
    declared = {opt for param in params for opt in param.opts if opt.startswith("--")}
    known = sorted(declared | set(_UNDECLARED_FLAGS) | ({"--plan"} if command in PLAN_FLAGS else set()))
    near = difflib.get_close_matches(unknown[0].split("=", 1)[0], known, n=1, cutoff=0.75)
    hint = f"; did you mean {near[0]}?" if near else f"; the options are {', '.join(known)}"
    raise RunContextError(f"{command}: no option {unknown[0]}{hint} (overrides are written field=value)")


# A NeMo-Run parse error's message embeds the whole config; its context names the argument.
_PARSED_AS = re.compile(r"'key': '(?P<key>[^']+)', 'value': '(?P<value>[^']*)', 'expected_type': <class '(?P<type>[\w.]+)'>")
_NO_FIELD = re.compile(r"(?:No parameter named|Invalid attribute) '(?P<field>\w+)'")


def error_message(command: str, error: Exception) -> str:
    """One line for a failed command: what failed, naming the argument or field and the value."""
    text = str(error)
    if isinstance(error, CLIException):
        context = getattr(error, "context", {}) or {}
        parsed, unknown = _PARSED_AS.search(text), _NO_FIELD.search(text)
        if parsed:
            text = f"{parsed['key']}={parsed['value']!r}: expected {parsed['type'].rsplit('.', 1)[-1]}"
        elif unknown:
            text = f"{context.get('key') or unknown['field']}: no such field or argument of {command}"
        else:
            text = text.splitlines()[0][:300]
    elif text.startswith("No matching factory found for:"):
        known = sorted(command_recipes().get(command, {}))
        text = f"--factory: {text}; expected one of {known}"
    elif not text or not isinstance(error, (ValueError, OSError, LookupError)):
        text = f"{type(error).__name__}: {text or repr(error)} (-v shows the traceback)"
    first = text.split(":", 1)[0]
    return text if first == command else f"{command}: {text}"


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


@functools.cache
def register() -> None:
    """Add the commands, each command's recipes and the executors to NeMo-Run's registry (once a process)."""
    recipes = command_recipes()
    for name, command in COMMANDS.items():
        run.cli.entrypoint(command, namespace=NAMESPACE, run_ctx_cls=TwvlmRunContext)
        for recipe_name, recipe in recipes.get(name, {}).items():
            _register_recipe(command, recipe_name, recipe)
    run.cli.factory(local_executor, target=run.Executor, name="local")
    for path in sorted((conf_dir() / "cluster").glob("*.yaml")):
        _register_cluster_file(path)


def _register_recipe(command: Callable, name: str, recipe: Callable[[], Any]) -> None:
    arg = config_arg(command)

    def task() -> run.Partial:
        return run.Partial(command, **{arg: to_config(recipe())})

    task.__name__ = task.__qualname__ = name  # what `--help` lists
    task.__doc__ = recipe.__doc__
    run.cli.factory(task, target=command, name=name)


def _register_cluster_file(path: Path) -> None:
    def executor() -> run.Config[run.Executor]:
        return load_executor(path)

    executor.__name__ = executor.__qualname__ = path.stem
    executor.__doc__ = f"Executor described by {path}."
    run.cli.factory(executor, target=run.Executor, name=path.stem)


def main(argv: list[str] | None = None) -> int:
    """`python -m nemo_twvlm.launch.cli <command> ...`, the same as `nemo twvlm <command> ...`."""
    from nemo_run.cli.api import create_cli

    register()
    sys.argv = [sys.argv[0], NAMESPACE, *(sys.argv[1:] if argv is None else argv)]
    try:
        return create_cli()(standalone_mode=False) or 0
    except typer.TyperException as error:  # a bad option, an unknown command: typer's (vendored) click errors
        error.show()
        return error.exit_code


if __name__ == "__main__":
    from nemo_twvlm.launch.cli import main as registered_main  # this module under its own name, not __main__

    sys.exit(registered_main())
