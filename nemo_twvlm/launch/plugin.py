"""NeMo-Run's plugin hook for `nemo twvlm ...` (`[project.entry-points."nemo_run.cli"] twvlm`).

NeMo-Run finds a namespace's commands by importing the module its entry point names, so importing this
module registers them; nothing in the package imports it.
"""
from nemo_twvlm.launch.cli import register

register()
