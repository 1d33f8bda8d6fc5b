"""Tools around the agent: the CLI, operator commands, HQ-side hub tools, the demo."""
