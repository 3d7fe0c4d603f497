"""Curation across a Slurm allocation: one Ray cluster, one pipeline run.

`nemo twvlm curate ... run.executor=slurm_cpu run.executor.nodes=N` submits NeMo-Run's Ray-on-Slurm job
(nemo_run.run.ray.slurm, template ray.sub.j2): the Ray head starts on the first node, a Ray worker on each
other node, the script waits until all N nodes have joined, then runs the pipeline once, on the head,
against that cluster. When it returns the batch script ends, and Slurm ends the head and worker steps
with the job: that is the teardown.

The pipeline is the CLI's parsed task, serialized the way NeMo-Run's own Slurm jobs run theirs
(`fdl_runner`), so the head runs exactly the config checked here. Curator's Ray Data and Xenna executors
call `ray.init()` without an address, which joins the cluster that RAY_ADDRESS names. A lost node fails
the job (or Slurm requeues it: NeMo-Run submits with --requeue); the same command run again resumes from
the parts already written (nemo_twvlm.curation.rerun).
"""
from __future__ import annotations

import copy
import os

import fiddle as fdl
import nemo_run as run
from nemo_run.core.serialization.zlib_json import ZlibJSONSerializer
from nemo_run.run.ray.slurm import SlurmRayCluster, SlurmRayJob

# The curation executors that spread stages over a Ray cluster; in_process would use the head alone.
RAY_EXECUTORS = ("ray_data", "xenna")


def head_command(task: run.Partial, name: str) -> str:
    """What the head runs once the cluster is up. `$ip_head` is the head's address, which ray.sub.j2 sets
    before it expands the command; the serialized task is URL-safe base64, safe inside its quotes."""
    encoded = ZlibJSONSerializer().serialize(task)
    return f"RAY_ADDRESS=$ip_head python -m nemo_run.core.runners.fdl_runner -n {name} {encoded}"


def cluster_executor(executor: run.SlurmExecutor, cluster_dir: str) -> run.SlurmExecutor:
    """The executor as the Ray job needs it.

    - Each node's Ray step is sized from its CPUs: ray.sub.j2 assumes GPU nodes and, without
      CPUS_PER_WORKER, asks srun for 8 GPUs x 16 = 128 CPUs per node. Its GPU-count resource
      (`worker_units`) only counts joined nodes, so it needs no change.
    - The cluster gets a token of its own, written to the cluster directory (shared, and mounted in every
      node's container) before Ray starts: without one, anyone who reaches the head's port runs code as
      this user. Ray versions without token authentication ignore both variables.
    """
    if not executor.cpus_per_task:
        raise ValueError(f"run.executor.cpus_per_task={executor.cpus_per_task!r}: expected the CPUs of one node "
                         "for its Ray head or worker")
    token = os.path.join(cluster_dir, "ray_auth_token")
    sized = copy.copy(executor)  # shallow: the tunnel holds a lock, and only these fields change
    sized.env_vars = {**executor.env_vars, "CPUS_PER_WORKER": str(executor.cpus_per_task),
                      "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token}
    new_token = f"(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \\n' > {token})"
    sized.setup_lines = "\n".join(filter(None, [executor.setup_lines, new_token]))
    return sized


def launch_curation(task: run.Partial, executor: run.SlurmExecutor, name: str, *, dryrun: bool) -> str | None:
    """Submit the Ray-cluster job (returns its Slurm job id), or with `dryrun` print its sbatch script."""
    cfg = fdl.build(task.cfg)
    if cfg.executor.name not in RAY_EXECUTORS:
        raise ValueError(f"executor.name={cfg.executor.name!r}: a Slurm run spreads the pipeline over a Ray "
                         f"cluster; expected one of {list(RAY_EXECUTORS)}")
    cluster_dir = os.path.join(executor.tunnel.job_dir, name)  # where NeMo-Run puts this job's files
    executor = cluster_executor(executor, cluster_dir)
    command = head_command(task, name)
    if dryrun:
        # SlurmRayJob.start asks Slurm for the job's status over the tunnel even on a dry run, so the dry run
        # calls what start() calls, SlurmRayCluster.create, with the code directory start() would ship to.
        code_dir = os.path.join(cluster_dir, "code")
        SlurmRayCluster(name=name, executor=executor).create(command=command, workdir=code_dir, dryrun=True)
        return None
    job = SlurmRayJob(name=name, executor=executor)
    job.start(command=command, workdir="")  # no workdir: the executor's packager ships the code
    return job.job_id
