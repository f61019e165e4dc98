"""Feature knowledge: methods that match intermediate representations.

Every module here is imported by kdrun.losses.registry: a new file is a new method."""
