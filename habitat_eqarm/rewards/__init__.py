"""EQA-RM scoring: prompts, strict output parsing, reward-model backends, the gym wrapper.

Filled by the scoring issue (prompts, ``parse_evaluation``, ``EQARewardModel``) and the gym
issue (``EQARMReward``).
"""
