"""Data sources: each one owns one foreign interface and publishes samples to the publisher."""
