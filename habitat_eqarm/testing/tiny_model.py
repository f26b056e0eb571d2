"""A tiny, real-architecture Qwen2-VL checkpoint built locally, with no network.

:func:`make_tiny_model` writes a ``Qwen2VLForConditionalGeneration`` with random weights and
tiny dimensions (a few MB) plus a full processor: a byte-level BPE tokenizer trained on text
we generate here, Qwen's special tokens, the Qwen2-VL image and video processors and a chat
template that lays out turns and vision placeholders the way Qwen2-VL-Instruct does. Every code
path that loads ``Qwen/Qwen2-VL-2B-Instruct`` loads this checkpoint the same way, so tests
exercise the real loading, preprocessing and generation code on CPU in seconds.

The same seed gives the same bytes.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

#: Bump whenever the builder's output changes, so cached copies are rebuilt.
TINY_MODEL_VERSION = 2

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2-VL-Instruct's conversation layout, written as our own Jinja: a default system turn,
# then `<|im_start|>role\n...<|im_end|>\n` per message; an image or video part becomes
# `<|vision_start|><|image_pad|><|vision_end|>` (resp. `<|video_pad|>`), which the processor
# expands to one pad token per merged vision patch.
CHAT_TEMPLATE = (
    "{% set default_system = 'You are a helpful assistant.' %}"
    "{% if messages and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\n{{ default_system }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "the a an is are was were on in under above near next to left right of and or not with "
    "room kitchen bedroom bathroom living dining hallway office stairs door window wall "
    "floor ceiling table chair sofa couch bed lamp tv television plant picture mirror shelf "
    "cabinet fridge sink oven microwave towel rug clock vase book laptop bottle cup red blue "
    "green white black brown yellow gray wooden metal open closed on off first then finally "
    "view frame question answer reasoning trace critique score predicted visible shows see "
    "seen agent correct incorrect because therefore however evidence grounded consistent "
    "plausible what where which how many is there color object state function location "
    "spatial"
).split()


def _prompt_texts() -> list[str]:
    """Our prompts' wording, so prompt text costs about as many tokens as with Qwen's BPE."""
    from habitat_eqarm.rewards.prompts import PROMPTS, WRONG_ANSWER_EXTRA

    texts = [WRONG_ANSWER_EXTRA]
    for prompt in PROMPTS.values():
        texts += [prompt.system, prompt.user]
    return texts


def _corpus(rng: random.Random, lines: int = 4000) -> list[str]:
    """Generated training text: sentences over our vocabulary, numbers and tag-like markup."""
    out = _prompt_texts() * 20
    for _ in range(lines):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        sentence = " ".join(words).capitalize()
        kind = rng.random()
        if kind < 0.2:
            sentence = f"<critique>{sentence}.</critique><score>{rng.randint(0, 10)}</score>"
        elif kind < 0.3:
            sentence = f"<think>{sentence}.</think> Score: {rng.randint(0, 10)}"
        else:
            sentence += rng.choice([".", "?", "!", ","]) + f" {rng.randint(0, 999)}"
        out.append(sentence)
    return out


def make_tokenizer(seed: int = 0, vocab_size: int = 2048):
    """A ``Qwen2Tokenizer`` with a byte-level BPE trained on generated text plus Qwen's specials."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_corpus(random.Random(seed)), trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_processor(seed: int = 0):
    """A full ``Qwen2VLProcessor`` (tokenizer, image and video processors, chat template)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    # Qwen2-VL-Instruct's published pixel bounds; callers pass max_pixels per request.
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size),
        tokenizer=make_tokenizer(seed),
        video_processor=Qwen2VLVideoProcessor(size=size),
        chat_template=CHAT_TEMPLATE,
    )


def tiny_config(tokenizer, *, hidden_size: int = 64, num_layers: int = 2, vision_dim: int = 32):
    """A ``Qwen2VLConfig`` with small dimensions and token ids taken from ``tokenizer``.

    ``hidden_size`` must be a multiple of 16 (4 heads of a head size divisible by 4 for M-RoPE).
    """
    from transformers import Qwen2VLConfig

    if hidden_size % 16:
        raise ValueError(f"hidden_size must be a multiple of 16, got {hidden_size}")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    hidden = hidden_size
    half_head = hidden_size // 4 // 2
    section = [half_head // 4, (half_head - half_head // 4) // 2]
    section.append(half_head - sum(section))
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": vision_dim,
            "hidden_size": hidden,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def make_tiny_model(
    path: str | os.PathLike[str],
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_dim: int = 32,
) -> Path:
    """Write a tiny random-weight Qwen2-VL checkpoint with its processor to ``path``; return it.

    The defaults give about 1 MB of weights; larger sizes serve benchmarks.

    Loadable with ``Qwen2VLForConditionalGeneration.from_pretrained(path)`` /
    ``AutoModelForImageTextToText`` and ``AutoProcessor.from_pretrained(path)``.
    """
    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    path = Path(path)
    processor = make_processor(seed)
    config = tiny_config(
        processor.tokenizer, hidden_size=hidden_size, num_layers=num_layers, vision_dim=vision_dim
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=[config.text_config.eos_token_id, config.text_config.bos_token_id],
        pad_token_id=config.text_config.pad_token_id,
        do_sample=False,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
