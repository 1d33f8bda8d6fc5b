"""plantsync: the plant-edge sync agent."""

__version__ = "0.1.0"
