"""The local web surface: the HTTP API, the status page, the metrics endpoint, static assets."""
