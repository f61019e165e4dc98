"""Feature knowledge: methods that match intermediate representations."""

from kdrun.losses.feature import at, fitnet  # noqa: F401
