"""Training EQA-RM: perturbations, reward maths, rejective fine-tuning and C-GRPO on TRL."""
