"""Conversations render exactly as the tokenizer's own chat template and train on assistant turns only."""
import pytest
import torch
from megatron.energon import Sample

from nemo_twvlm.data.conversation import encode_conversation, generation_prompt, normalise_messages
from nemo_twvlm.data.samples import ConversationSample
from nemo_twvlm.data.task_encoder import BadSample, LlavaTaskEncoder
from nemo_twvlm.presets import PRESETS

TURNS = [
    {"from": "human", "value": "這個東西是什麼顏色？請用英文回答。"},
    {"from": "gpt", "value": "Red."},
    {"from": "human", "value": "Is there a bubble tea in the image? Answer only yes or no."},
    {"from": "gpt", "value": "yes"},
]


def test_rendering_equals_apply_chat_template_for_text_turns(tokenizer):
    messages = normalise_messages(TURNS)
    ids, trained = encode_conversation(tokenizer, messages)
    reference = tokenizer.apply_chat_template(messages, tokenize=True)
    reference = list(reference["input_ids"] if hasattr(reference, "keys") else reference)
    assert ids == reference
    assert len(trained) == len(ids)


def test_loss_mask_covers_exactly_the_assistant_replies_and_their_end_token(tokenizer):
    ids, trained = encode_conversation(tokenizer, normalise_messages(TURNS))
    target = [i for i, t in zip(ids, trained) if t]
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    expected = (tokenizer.encode("Red.", add_special_tokens=False) + [eot]
                + tokenizer.encode("yes", add_special_tokens=False) + [eot])
    assert target == expected
    # Every trained span starts right after an assistant header, which itself is not trained.
    header = tokenizer.encode("<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)
    first = trained.index(True)
    assert ids[first - len(header):first] == header


def test_generation_prompt_ends_with_the_assistant_header(tokenizer):
    ids = generation_prompt(tokenizer, normalise_messages(TURNS[:1]))
    header = tokenizer.encode("<|start_header_id|>assistant<|end_header_id|>\n\n", add_special_tokens=False)
    assert ids[-len(header):] == header


@pytest.mark.parametrize("turns, message", [
    ([{"from": "robot", "value": "hi"}], "role 'robot'"),
    ([{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}], "content must be a string"),
])
def test_bad_conversations_are_named(turns, message):
    with pytest.raises(ValueError, match=message):
        normalise_messages(turns)


def test_a_conversation_without_assistant_turn_has_nothing_to_train(tokenizer):
    with pytest.raises(ValueError, match="no assistant turn"):
        encode_conversation(tokenizer, normalise_messages([{"from": "human", "value": "hi"}]))


def _sample(conversation, images):
    return ConversationSample(__key__="c0", __restore_key__=(), images=images, conversation=conversation)


def test_task_encoder_trains_assistant_tokens_and_expands_the_image(tokenizer):
    encoder = LlavaTaskEncoder(tokenizer, PRESETS["debug"], 256)
    conversation = [{"from": "human", "value": "<image>\n" + TURNS[0]["value"]}, *TURNS[1:]]
    encoded = encoder.encode_sample(_sample(conversation, [torch.rand(3, 64, 64)]))
    assert (encoded.tokens == 5).sum() == 1 and encoded.images.shape == (1, 3, 64, 64)
    assert encoded.tokens[0] == tokenizer.bos_token_id and (encoded.tokens == tokenizer.bos_token_id).sum() == 1
    trained = encoded.labels[encoded.loss_mask > 0].tolist()
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert trained == (tokenizer.encode("Red.", add_special_tokens=False) + [eot]
                       + tokenizer.encode("yes", add_special_tokens=False) + [eot])
    assert encoded.seq_lengths == [len(encoded.tokens) + PRESETS["debug"].num_image_tokens - 1]


def test_image_count_mismatch_is_a_named_skip(tokenizer):
    encoder = LlavaTaskEncoder(tokenizer, PRESETS["debug"], 256)
    with pytest.raises(BadSample, match="image_count_mismatch"):
        encoder.encode_sample(_sample([{"from": "human", "value": "<image> hi"}, {"from": "gpt", "value": "x"}], []))


def test_text_only_conversations_train_without_images(tokenizer, debug_model):
    # Text-only instruction data can be blended into SFT (it protects the LM's text ability).
    from nemo_twvlm.training.step import model_inputs

    encoder = LlavaTaskEncoder(tokenizer, PRESETS["debug"], 256)
    sample = _sample([{"from": "human", "value": "你好"}, {"from": "gpt", "value": "不客氣。"}], [])
    encoded = encoder.encode_sample(sample)
    assert encoded.images.shape[0] == 0 and encoded.seq_lengths == [len(encoded.tokens)]
    batch = encoder.batch([encoded, encoded])
    losses, mask = debug_model(**model_inputs(batch, image_token_index=5, num_image_tokens=16, use_te=False))
    assert losses.shape == mask.shape == batch.tokens.shape
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert mask.sum() == 2 * len(tokenizer.encode("不客氣。", add_special_tokens=False) + [eot])
