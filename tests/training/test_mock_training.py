"""The mock-data throughput recipe trains through megatron.training with no dataset on disk."""
import re
import subprocess
import sys

from nemo_twvlm.training.config import config_to_json
from nemo_twvlm.launch.recipes import get_recipe


def test_debug_perf_recipe_trains_on_mock_rows(tmp_path):
    cfg = get_recipe("twvlm_debug_perf")
    assert cfg.data.mock and cfg.checkpoint.save is None
    cfg.data.path = str(tmp_path / "nothing-here")  # never read
    cfg.trainer.max_steps = 3
    path = tmp_path / "perf.json"
    path.write_text(config_to_json(cfg))
    result = subprocess.run([sys.executable, "-m", "nemo_twvlm.training.pretrain", str(path)],
                            capture_output=True, text=True, timeout=600)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    losses = [float(x) for x in re.findall(r"iteration\s+\d+/\s*3 \|.*?lm loss: ([0-9.E+-]+)", out)]
    assert len(losses) == 3
    # Random tokens over a 1024 vocabulary: the loss starts near ln(1024) = 6.93.
    assert 6.0 < losses[0] < 7.5
    # 8 rows x 256 positions per step, the throughput megatron logs is over full-length rows.
    assert re.search(r"global batch size:\s+8 ", out)
