"""Errors raised inside a deployed location (the runtime has its own small hierarchy)."""

from __future__ import annotations


class LocationError(Exception):
    """Base class of every error the runtime raises on purpose."""


class SettingsError(LocationError):
    """The environment the platform injected is missing or unusable."""


class StorageIsolationError(LocationError):
    """A storage key would leave the repo's own prefix, or a cross-repo read is not granted.

    Raised by the IO manager and the compute log manager before any storage call is made.
    """
