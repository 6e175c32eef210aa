"""Reference RIPT provider."""
