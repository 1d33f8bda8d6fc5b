"""The running service: lifecycle, supervisor, pipeline, uplink, CLI, demo."""
