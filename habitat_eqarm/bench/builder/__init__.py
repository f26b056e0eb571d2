"""The EQARewardBench builder (spec §2): generate, judge, review, split, export."""
