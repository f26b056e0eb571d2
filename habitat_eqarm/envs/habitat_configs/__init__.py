"""YAML for habitat-lab's Hydra config system (found through ``EQARMConfigPlugin``)."""
