"""`python -m nemo_twvlm.curation --config-name NAME input_dir=IN output_dir=OUT [field=value ...]` forwards to

    nemo twvlm curate --factory NAME input_dir=IN output_dir=OUT [field=value ...] --yes

NAME is a YAML in conf/curation (or a curation recipe); the overrides are the config's dotted fields. The
command line is launch.cli's; this module only rewrites `--config-name` and hands the arguments over (by
exec, so the curation package never imports the launch layer above it).
"""
import os
import sys


def forwarded(args: list[str]) -> list[str]:
    """`curate` arguments for this form's: `--config-name NAME` / `-cn NAME` / `--config-name=NAME` becomes
    `--factory NAME` (pairs_zh_tw if none is given)."""
    name, rest = "pairs_zh_tw", []
    it = iter(args)
    for arg in it:
        if arg in ("--config-name", "-cn"):
            name = next(it, name)
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return ["curate", "--factory", name, *rest, "--yes"]


if __name__ == "__main__":
    os.execv(sys.executable, [sys.executable, "-m", "nemo_twvlm.launch.cli", *forwarded(sys.argv[1:])])
