"""`python -m nemo_twvlm.conversion <command> key=value ...` forwards to `nemo twvlm <command> ...`:

    python -m nemo_twvlm.conversion import_hf src=LLAVA_DIR dst=OUT tp=2
    python -m nemo_twvlm.conversion import_hf clip=CLIP_DIR llama=LLAMA_DIR dst=OUT
    python -m nemo_twvlm.conversion export_hf src=OUT dst=HF_DIR
    python -m nemo_twvlm.conversion export_trtllm hf_dir=HF_DIR engine_dir=ENGINE_DIR

The command line is launch.cli's; this module only hands the arguments over (by exec, so the conversion
package never imports the launch layer above it), adding `--yes`: this form never asked.
"""
import os
import sys

COMMANDS = ("import_hf", "export_hf", "export_trtllm")

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m nemo_twvlm.conversion {{{','.join(COMMANDS)}}} key=value ... "
                 f"(the arguments of `nemo twvlm <command>`)")
    os.execv(sys.executable, [sys.executable, "-m", "nemo_twvlm.launch.cli", *sys.argv[1:], "--yes"])
