"""Removal-only kinds, read and acted on only for a PURGE: the ECR repository and the repo's S3 data."""

from __future__ import annotations

from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.engine import Call, Context, DeletePrefix, Kind, Scope


def _read_ecr(gw: Any, scope: Scope) -> bool:
    return scope.purge and gw.ecr_repository_exists(naming.ecr_repository(scope.name))


def _remove_ecr(exists: bool, ctx: Context) -> list[Call]:
    if not (exists and ctx.scope.purge):
        return []
    name = naming.ecr_repository(ctx.scope.name)
    return [Call(
        "ecr.delete", "ecr", "DeleteRepository", {"repositoryName": name, "force": True},
        f"delete ECR repository {name} and its images (PURGE)", f"ECR repository {name}",
        ok=("RepositoryNotFoundException",),
    )]


def _read_data(gw: Any, scope: Scope) -> bool:
    return scope.purge and bool(scope.settings.bucket) and gw.has_objects(scope.settings.bucket, f"{naming.s3_prefix(scope.name)}/")


def _remove_data(exists: bool, ctx: Context) -> list[DeletePrefix]:
    if not (exists and ctx.scope.purge):
        return []
    return [DeletePrefix(ctx.scope.settings.bucket, f"{naming.s3_prefix(ctx.scope.name)}/")]


ECR_KIND = Kind("ecr_repository", read=_read_ecr, remove=_remove_ecr, removal_rank=60)
DATA_KIND = Kind("s3_data", read=_read_data, remove=_remove_data, removal_rank=70)
