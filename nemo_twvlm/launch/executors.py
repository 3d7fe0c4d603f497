"""NeMo-Run executors described by cluster YAML files.

A cluster file names the executor kind and then sets that executor's own fields, so a reader of
NeMo-Run's `SlurmExecutor` docs can read the file:

    executor: slurm          # local | slurm | docker
    account: my_account
    nodes: 2
    gpus_per_node: 8
    container_image: nvcr.io/nvidia/pytorch:25.11-py3
    tunnel: {type: ssh, host: login.example.org, user: $USER, job_dir: /lustre/.../nemo_run}
    packager: git            # git: ship this repo's HEAD | none: the code is already in the image

This module only turns a mapping or a given path into a `run.Config[Executor]`; it never looks for
files itself. The CLI decides where cluster files live (`nemo_twvlm.launch.cli`).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import nemo_run as run
import yaml

class ClusterSpecError(Exception):
    """A cluster file that cannot become an executor.

    Deliberately not a ValueError: NeMo-Run's `run.executor=NAME` lookup reads ValueError as
    "no such executor" and would replace this message with that one.
    """


TUNNELS = {"ssh": run.SSHTunnel, "local": run.LocalTunnel}
PACKAGERS = {"git": run.GitArchivePackager, "none": run.Packager}


def load_executor(path: str | os.PathLike) -> run.Config[run.Executor]:
    path = Path(path)
    spec = yaml.safe_load(path.read_text()) or {}
    if not isinstance(spec, Mapping):
        raise ClusterSpecError(f"{path}: expected a mapping of executor fields, got {type(spec).__name__}")
    return executor_from_spec(spec, source=str(path))


def executor_from_spec(spec: Mapping[str, Any], source: str = "cluster spec") -> run.Config[run.Executor]:
    spec = _expand_env(dict(spec))
    kind = spec.pop("executor", None)
    if kind == "local":
        return local_executor(**spec)
    if kind == "slurm":
        return _slurm_executor(spec, source)
    if kind == "docker":
        return _docker_executor(spec, source)
    raise ClusterSpecError(f"{source}: executor={kind!r} is not supported; expected 'local', 'slurm' or 'docker'")


def local_executor(**fields: Any) -> run.Config[run.LocalExecutor]:
    """A subprocess on this machine that runs this interpreter's `python`.

    NeMo-Run starts the task as `python -m nemo_run.core.runners.fdl_runner ...` and resolves
    `python` on PATH; putting this interpreter's directory first keeps the child in the same venv
    even when the venv is not activated (e.g. `.venv/bin/nemo ...`).
    """
    _check_fields(run.LocalExecutor, fields, "local executor")
    env_vars = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env_vars.update(fields.pop("env_vars", None) or {})
    return run.Config(run.LocalExecutor, env_vars=env_vars, **fields)


def _slurm_executor(spec: dict[str, Any], source: str) -> run.Config[run.SlurmExecutor]:
    tunnel = spec.pop("tunnel", None)
    if not isinstance(tunnel, Mapping):
        raise ClusterSpecError(
            f"{source}: tunnel={tunnel!r}; expected {{type: ssh, host, user, job_dir}} to submit from "
            "a workstation or {type: local, job_dir} on a login node"
        )
    tunnel = dict(tunnel)
    tunnel_type = tunnel.pop("type", None)
    if tunnel_type not in TUNNELS:
        raise ClusterSpecError(f"{source}: tunnel.type={tunnel_type!r} is not supported; expected one of {sorted(TUNNELS)}")
    _check_fields(TUNNELS[tunnel_type], tunnel, f"{source}: tunnel")

    packager = spec.pop("packager", "git")
    if packager not in PACKAGERS:
        raise ClusterSpecError(f"{source}: packager={packager!r} is not supported; expected one of {sorted(PACKAGERS)}")

    _check_fields(run.SlurmExecutor, spec, source)
    return run.Config(
        run.SlurmExecutor,
        tunnel=run.Config(TUNNELS[tunnel_type], **tunnel),
        packager=run.Config(PACKAGERS[packager]),
        **spec,
    )


def _docker_executor(spec: dict[str, Any], source: str) -> run.Config[run.DockerExecutor]:
    """A container on this machine's GPUs (an NGC image built from this repo's Dockerfile)."""
    packager = spec.pop("packager", "none")
    if packager not in PACKAGERS:
        raise ClusterSpecError(f"{source}: packager={packager!r} is not supported; expected one of {sorted(PACKAGERS)}")
    _check_fields(run.DockerExecutor, spec, source)
    return run.Config(run.DockerExecutor, packager=run.Config(PACKAGERS[packager]), **spec)


def _check_fields(cls: type, fields: Mapping[str, Any], source: str) -> None:
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ClusterSpecError(f"{source}: {unknown} are not fields of {cls.__name__}; expected some of {sorted(known)}")


def _expand_env(value: Any) -> Any:
    # Cluster files are shared; $USER and friends keep personal values out of them.
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value
