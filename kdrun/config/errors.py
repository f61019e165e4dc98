"""The error every bad input becomes: one line naming the key and the fix."""


class ConfigError(ValueError):
    """Raised before any training when the config or data cannot work."""
