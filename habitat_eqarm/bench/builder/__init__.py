"""The EQARewardBench builder (docs/method.md §2): generate, judge, review, split, export."""
