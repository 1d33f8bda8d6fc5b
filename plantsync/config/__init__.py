"""Configuration: the model, loading with environment overrides, the sample config."""
