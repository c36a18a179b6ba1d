"""Tools for testing code that uses resnetkit, and resnetkit itself (fault injection)."""
