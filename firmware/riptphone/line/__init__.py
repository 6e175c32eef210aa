"""The phone's line at its provider: registration and identity, and the push channel."""
