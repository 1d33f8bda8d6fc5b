"""The message contracts: models, inbound parsing, topics and the published documents."""
