"""Reward-model backends: ``hf`` (local transformers); ``vllm`` and ``openai`` plug in here."""
