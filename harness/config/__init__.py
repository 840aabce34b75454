"""Configuration: the attack catalogue, specs, grids, experiment files and their validation."""
