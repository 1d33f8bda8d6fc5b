"""What makes links reconnect sooner than their backoff would: renewed TLS material, a network
that came back (``nudge``)."""
