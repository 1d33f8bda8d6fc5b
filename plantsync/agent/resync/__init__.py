"""Keeping the site's down sequence: gap detection and sequence resets (``sequence``)."""
