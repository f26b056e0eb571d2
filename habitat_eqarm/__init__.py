"""habitat-eqarm: EQA-RM, a generative multimodal reward model for Embodied Question Answering."""

__version__ = "0.1.0"
