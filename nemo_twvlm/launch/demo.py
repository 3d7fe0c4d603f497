"""The main job at debug size: synthetic Taiwan data -> align -> CPT -> does the model use the image?

Each training stage runs megatron.training in a fresh process (its globals are once-per-process);
the held-out evaluation then runs here.
"""
import dataclasses
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from nemo_twvlm.training.config import PretrainConfig

_ITERATION = re.compile(r"iteration\s+(\d+)/\s*(\d+)")


def train_stage(cfg: PretrainConfig, log_path: Path) -> None:
    """Train `cfg` in a child process, showing a progress bar and keeping megatron's log in a file."""
    from nemo_twvlm.training.pretrain import config_to_json

    config_path = log_path.with_suffix(".json")
    config_path.write_text(config_to_json(cfg), encoding="utf-8")
    command = [sys.executable, "-m", "nemo_twvlm.training.pretrain", str(config_path)]
    with open(log_path, "w", encoding="utf-8") as log, \
            tqdm(total=cfg.trainer.max_steps, desc=cfg.name, unit="step") as bar, \
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.write(line)
            match = _ITERATION.search(line)
            if match:
                bar.update(int(match.group(1)) - bar.n)
                loss = re.search(r"lm loss: ([0-9.E+-]+)", line)
                if loss:
                    bar.set_postfix(loss=f"{float(loss.group(1)):.3f}")
    if proc.returncode != 0:
        raise RuntimeError(f"stage {cfg.name} failed (exit {proc.returncode}); see {log_path}")


def run_demo(align: PretrainConfig, cpt: PretrainConfig, out_dir: str = "runs/demo") -> dict:
    from nemo_twvlm.data.synthetic import write_dataset
    from nemo_twvlm.evaluation.attribute_probe import evaluate_checkpoint

    start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    write_dataset(data)
    align = dataclasses.replace(align, data=dataclasses.replace(align.data, path=str(data / "blend.yaml")),
                                checkpoint=dataclasses.replace(align.checkpoint, save=str(out / "align"), load=None))
    cpt = dataclasses.replace(cpt, data=dataclasses.replace(cpt.data, path=str(data / "blend.yaml")),
                              model=dataclasses.replace(cpt.model, init_from=str(out / "align")),
                              checkpoint=dataclasses.replace(cpt.checkpoint, save=str(out / "cpt"), load=None))
    for cfg in (align, cpt):
        _fresh(Path(cfg.checkpoint.save))
        train_stage(cfg, out / f"{cfg.name}.log")

    results = evaluate_checkpoint(cpt.checkpoint.save, str(data / "pairs_val"))
    images, blank = results["images"], results["blank"]
    summary = dict(
        images_acc=images.accuracy(), blank_acc=blank.accuracy(), chance=images.mean_chance(),
        steps=align.trainer.max_steps + cpt.trainer.max_steps, wall_s=int(time.time() - start),
        peak_rss_mb=_peak_rss_mb(),
    )
    table = Table(title=f"held-out probe: {sum(images.total.values())} questions on "
                        f"{images.total['color']} images ({data / 'pairs_val'})")
    for column in ("question", "with image", "image blanked", "chance"):
        table.add_column(column, justify="right")
    for question in images.total:
        table.add_row(question, f"{images.accuracy(question):.3f}", f"{blank.accuracy(question):.3f}",
                      f"{images.chance[question]:.3f}")
    table.add_row("all", f"{summary['images_acc']:.3f}", f"{summary['blank_acc']:.3f}", f"{summary['chance']:.3f}")
    console = Console()
    console.print(table)
    console.print(f"stages: {align.name} ({align.trainer.max_steps} steps) -> {cpt.name} "
                  f"({cpt.trainer.max_steps} steps); peak RSS of any process {summary['peak_rss_mb']:.0f} MB; "
                  f"logs in {out}")
    print(f"demo: images_acc={summary['images_acc']:.3f} blank_acc={summary['blank_acc']:.3f} "
          f"chance={summary['chance']:.3f} steps={summary['steps']} wall_s={summary['wall_s']}", flush=True)
    return summary


def _fresh(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports KiB
