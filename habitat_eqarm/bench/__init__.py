"""EQARewardBench: building it (generate, judge, review, split, export) and evaluating on it."""
