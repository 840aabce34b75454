"""ART (Adversarial Robustness Toolbox) adapter."""
