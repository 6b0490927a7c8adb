"""The error hierarchy. Each step wraps failures once, at its boundary.

Errors marked ``Retryable`` map to a Dagster ``RetryPolicy`` in the ops. What a deployed location
raises (``StorageIsolationError``) lives in ``meta_deployer_runtime.errors``.
"""

from __future__ import annotations


class MetaDeployerError(Exception):
    """Base class: every error the deployer raises on purpose."""


class Retryable(Exception):
    """Marker base: the failure is transient and the step may be retried."""


class SpecError(MetaDeployerError):
    """A config.yml, a Make argument or a run config is invalid.

    ``problems`` holds one ``(field, message)`` pair per problem found.
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid repo spec"]
        lines += [f"  - {field}: {message}" if field else f"  - {message}" for field, message in problems]
        super().__init__("\n".join(lines))


class SettingsError(MetaDeployerError):
    """An environment variable holds a value the deployer cannot use."""


class DetectionError(MetaDeployerError):
    """The code source of a repository could not be found unambiguously."""


class CloneError(MetaDeployerError):
    """Cloning or updating a checkout failed (unknown branch, unreachable remote...)."""


class UnsafeRepositoryError(MetaDeployerError):
    """A repository holds something a location may not serve (a symbolic link that leaves it)."""


class BuildError(MetaDeployerError):
    """Preparing the artifact (a virtualenv or an image) failed."""


class ImageBuildError(BuildError):
    """A Docker image failed to build."""


class ValidationFailed(BuildError):
    """The repository's definitions failed to load in the new artifact."""


class UnsupportedDagsterVersion(BuildError):
    """A location's Dagster release is outside the supported window (``meta_deployer.versions``)."""


class PublishError(MetaDeployerError):
    """Pushing the artifact to its registry failed."""


class AwsOperationError(MetaDeployerError):
    """An AWS call failed; the message names the resource and the call."""


class TransientAwsError(AwsOperationError, Retryable):
    """An AWS call failed in a way that a retry may fix."""


class WriteConflict(AwsOperationError):
    """A conditional write or delete found the object changed (or gone) since it was read."""


class UnhealthyError(MetaDeployerError):
    """A new version never became healthy; the previous one keeps serving."""


class WorkspaceError(MetaDeployerError):
    """workspace.yaml could not be read or written."""


class NotDeployedError(MetaDeployerError):
    """The repo named is not deployed (and has no config)."""


class ConfigSourceError(MetaDeployerError):
    """The configuration repository could not be read (fetch failed, no repos/ folder): nothing changes."""
