"""The VisTW-Dialogue judge: the authors' rubric (simplevals/prompts.py HUMAN_GUIDELINE), a 0-10 score read
from the judge's last `[評分]: N`, averaged over votes (simplevals/scoring.py).

    judge=http://host:8000/v1     any OpenAI-compatible chat-completions endpoint (judge_model= names the
                                  model, default the authors' gemini-2.0-flash-001; the key, if one is
                                  needed, comes from $OPENAI_API_KEY). Text only, 5 votes at temperature
                                  0.7, at most 7 tries: the official defaults.
    judge=runs/sft                a checkpoint of ours. Greedy, so one vote; it sees the dialogue's image
                                  too, since our model always takes one.

A reply without a readable score is not a vote; an answer with no vote is reported unjudged, not as 0.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

RUBRIC = """[Question]
{question}

[Assistant Response]
{response}

[Ground Truth]
{ground_truth}

請根據使用者詢問的問題 [Question] 與正確答案 [Ground Truth], 去評價助手的回覆 [Assistant Response] 的評分，評分依照下方的評價指導手冊去評分。

# 評分標註指南

## 評分範圍（0-10分）

### 10分：完美
- 完全準確無誤
- 回答問題的所有部分
- 清晰且條理分明
- 提供有幫助的補充說明

### 8-9分：非常好
- 有些微錯誤或遺漏
- 主要重點都有涵蓋
- 組織良好
- 提供有用的細節說明

### 6-7分：良好
- 有一些小錯誤
- 大部分重點都有提到
- 組織尚可
- 有一些相關說明

### 4-5分：普通
- 有數個錯誤
- 遺漏一些重點
- 基本的組織結構
- 說明不夠完整

### 2-3分：不佳
- 有許多錯誤
- 遺漏重要資訊
- 組織不清楚
- 說明不正確或不足

### 0-1分：不及格
- 大部分或完全錯誤
- 未回答問題重點
- 沒有明確的組織
- 說明不相關或有誤導
- 拒絕回答問題
- 回覆說明使用者沒有提供圖片
- 如果回覆要求使用者提供圖片應該給予0分

## 評分方式

1. 首先將回答與標準答案比較

2. 評估以下幾點：
   - 是否準確？
   - 是否回答了問題的所有部分
   - 是否清晰且有條理？
   - 是否提供有幫助的補充說明？
   - 是否根據圖片回答

3. 從10分開始扣分：
   - 每個事實錯誤（-1至-2分）
   - 遺漏資訊（-1至-2分）
   - 組織不佳（-1分）
   - 補充說明不當或錯誤（-1分）

4. 請簡短說明評分理由，包含：
   - 做得好的地方
   - 缺少或錯誤的部分
   - 為何給予此分數

你的回覆格式應該是如下（Your response should be in the format）:
[解釋]: (你的解釋)
[評分]: (int) """

DEFAULT_ENDPOINT_MODEL = "gemini-2.0-flash-001"  # the authors' default judge
MODEL_JUDGE_MAX_NEW_TOKENS = 512  # room for the [解釋] the rubric asks for before the score

_SCORE = re.compile(r"\[評分\]\s*[:：]?\s*(\d+)\s*$")


def parse_score(reply: str) -> int | None:
    """The integer after the last `[評分]:` when nothing but whitespace follows it, if in 0-10."""
    tail = reply[reply.rfind("[評分]"):] if "[評分]" in reply else ""
    found = _SCORE.match(tail)
    return int(found.group(1)) if found and 0 <= int(found.group(1)) <= 10 else None


class EndpointJudge:
    votes, temperature = 5, 0.7

    def __init__(self, url: str, model: str = DEFAULT_ENDPOINT_MODEL, *, timeout: float = 120.0):
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model, self.timeout = model, timeout
        self.name = f"{model} @ {url}"

    def reply(self, prompt: str, image_path: str) -> str:
        body = json.dumps({"model": self.model, "temperature": self.temperature,
                           "messages": [{"role": "user", "content": prompt}]}).encode()
        headers = {"Content-Type": "application/json"}
        if os.environ.get("OPENAI_API_KEY"):
            headers["Authorization"] = "Bearer " + os.environ["OPENAI_API_KEY"]
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"{self.url}: not a chat-completions reply: {str(payload)[:200]}") from None


class ModelJudge:
    votes, temperature = 1, 0.0

    def __init__(self, loaded, *, name: str, max_new_tokens: int = MODEL_JUDGE_MAX_NEW_TOKENS):
        self.loaded, self.name, self.max_new_tokens = loaded, name, max_new_tokens

    def reply(self, prompt: str, image_path: str) -> str:
        from nemo_twvlm.data.image import load_image
        from nemo_twvlm.evaluation.benchmarks.runner import model_text
        from nemo_twvlm.inference.answer import generate_text

        return generate_text(self.loaded.model, self.loaded.tokenizer, self.loaded.preset, load_image(image_path),
                             model_text(prompt), image_token_index=self.loaded.image_token_index,
                             max_new_tokens=self.max_new_tokens)


def make_judge(spec: str, model: str | None = None):
    """An endpoint judge for an http(s) URL, else the latest checkpoint in the directory `spec`."""
    if re.match(r"https?://", spec):
        return EndpointJudge(spec, model or DEFAULT_ENDPOINT_MODEL)
    from nemo_twvlm.inference.loading import load_for_inference
    from nemo_twvlm.rundir import latest_iteration

    return ModelJudge(load_for_inference(spec, latest_iteration(spec)), name=spec)


def judge_one(judge, record: dict) -> dict:
    """{"score": mean of the votes or None, "votes", "replies"}; tries up to 1.5x the votes, as the authors.
    A rubric prompt longer than a model judge's context is no verdict, with the reason under "error"."""
    prompt = RUBRIC.format(question=record["question"], response=record["generation"],
                           ground_truth=record["ground_truth"])
    from nemo_twvlm.inference.generate import PromptTooLong  # torch and megatron: only once a judge is used

    votes, replies = [], []
    for _ in range(int(judge.votes * 1.5) or 1):
        try:
            reply = judge.reply(prompt, record["image"])
        except PromptTooLong as error:  # this record's rubric prompt; the judge still takes the next one
            return {"score": None, "votes": [], "replies": [], "error": f"judge prompt too long: {error}"}
        replies.append(reply)
        if (score := parse_score(reply)) is not None:
            votes.append(score)
        if len(votes) >= judge.votes:
            break
    return {"score": sum(votes) / len(votes) if votes else None, "votes": votes, "replies": replies}


def judge_all(judge, records: list[dict]) -> list[dict]:
    """Judge every record (adds judge_score, judge_votes); the score board rows. An unreachable judge
    is asked no more, and the records it did not judge say why."""
    board, unreachable = [], None
    for record in records:
        if unreachable is None:
            try:
                verdict = judge_one(judge, record)
            except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
                unreachable = f"judge failed: {type(error).__name__}: {error}"
        if unreachable is not None:
            verdict = {"score": None, "votes": [], "replies": [], "error": unreachable}
        record.update(judge_score=verdict["score"], judge_votes=verdict["votes"])
        if "error" in verdict:
            record["judge_error"] = verdict["error"]
        board.append({"thread_id": record["thread_id"], "judge_responses": verdict["replies"],
                      "score": verdict["score"]})
    return board
