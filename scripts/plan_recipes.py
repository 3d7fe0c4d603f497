"""The planner's predictions for every 70B recipe, as the Markdown table in BENCHMARKS.md.

    .venv/bin/python scripts/plan_recipes.py [--mfu 0.4]

Pure arithmetic (no GPU, no torch): memory per GPU on the worst pipeline stage, pipeline bubble,
step time and tokens/s/GPU at the given MFU, days for the seed's data budget.
"""
import argparse
import re

from nemo_twvlm.launch.recipes import find_recipes
from nemo_twvlm.planner import DEFAULT_MFU, plan_table


def recipes_70b() -> dict:
    """Every 70B recipe, grouped by stage and variant, smallest cluster first."""
    configs = {name: recipe() for name, recipe in find_recipes("pretrain").items() if name.startswith("twvlm_70b")}

    def key(name: str):
        return re.sub(r"_\d+gpu$", "", name), configs[name].parallel.num_gpus

    return {name: configs[name] for name in sorted(configs, key=key)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mfu", type=float, default=DEFAULT_MFU)
    print(plan_table(recipes_70b(), mfu=parser.parse_args().mfu))


if __name__ == "__main__":
    main()
