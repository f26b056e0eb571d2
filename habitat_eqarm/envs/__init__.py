"""Gymnasium environments, the episode-memory recorder and (lazily) the Habitat plugin.

Filled by the gym and habitat issues; only ``envs/habitat*`` modules may import habitat.
"""
