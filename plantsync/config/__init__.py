"""Configuration: the model, loading with environment overrides, the sample config."""

from plantsync.config.load import config_hash, load_config, sample_config_path, summarize
from plantsync.config.model import AgentConfig

__all__ = ["AgentConfig", "config_hash", "load_config", "sample_config_path", "summarize"]
