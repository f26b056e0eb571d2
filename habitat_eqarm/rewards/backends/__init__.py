"""Reward-model backends: ``hf`` (local transformers), ``vllm`` (in-process vLLM), ``openai``
(any OpenAI-compatible chat endpoint). See :mod:`.base` for the interface."""
