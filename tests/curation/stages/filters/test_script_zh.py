from __future__ import annotations

from conftest import text_batch
from curation_inputs import stage_args

from nemo_twvlm.curation.stages.filters.script_zh import ScriptStage


def test_simplified_is_converted_to_taiwan_usage():
    batch = ScriptStage(**stage_args("script")).process(text_batch("这个软件的鼠标很好用", "這個軟體的滑鼠很好用"))
    assert [s.text for s in batch.data] == ["這個軟體的滑鼠很好用", "這個軟體的滑鼠很好用"]
    assert [s.meta.get("converted") for s in batch.data] == ["s2twp", None]
    assert batch.stage_counts()["script_zh"]["converted"] == {"zh-Hans": 1}


def test_drop_removes_simplified(reasons):
    batch = ScriptStage(**stage_args("script", simplified="drop")).process(text_batch("这个软件的鼠标很好用", "這個軟體的滑鼠很好用"))
    assert reasons(batch) == {"s0": "zh_hans"} and [s.key for s in batch.data] == ["s1"]
