"""The deployment record: tags on the ECS service, written only after a stable rollout.

``meta-deployer:commit``, ``:branch``, ``:image``, ``:spec-hash``, ``:settings``
and ``:endpoint`` are how ``list-repos`` and the next deploy adopt what exists
after a restart. Reads nothing of its own: it compares with the service's tags.
"""

from __future__ import annotations

from typing import Any

from meta_deployer.platforms.aws.common import (
    RECORD_TAGS,
    TAG_BRANCH,
    TAG_COMMIT,
    TAG_ENDPOINT,
    TAG_IMAGE,
    TAG_SETTINGS,
    TAG_SPEC_HASH,
    RepoInputs,
    endpoint,
    repo_tags,
    tag_list,
    tags,
)
from meta_deployer.platforms.aws.engine import Call, Context, Kind


def want(inputs: RepoInputs) -> dict[str, str]:
    return {
        **repo_tags(inputs.name),
        **tags({
            TAG_COMMIT: inputs.commit,
            TAG_BRANCH: inputs.branch,
            TAG_IMAGE: inputs.image,
            TAG_SPEC_HASH: inputs.spec.content_hash(),
            TAG_SETTINGS: inputs.settings.deploy_fingerprint(),
            TAG_ENDPOINT: endpoint(inputs.name, inputs.settings.namespace),
        }),
    }


def converge(want: dict[str, str], have: Any, ctx: Context) -> list[Call]:
    live = (ctx.observed.get("service") or {}).get("tagsDict") or {}
    if not ctx.values.get("service_changed") and all(live.get(k) == v for k, v in want.items()):
        return []
    shown = {k.split(":", 1)[-1]: v[:12] if k == TAG_COMMIT else v for k, v in want.items() if k in RECORD_TAGS[:3]}
    arn = ctx.values.get("service_arn")
    return [Call(
        "record.tag", "ecs", "TagResource", {"resourceArn": arn, "tags": tag_list(want, "key", "value")},
        f"record deployment on ECS service {ctx.scope.name}: {shown}", f"ECS resource {arn}",
        # After a stable rollout the new version serves: a failed tag write must not fail the
        # deploy (the pipeline then records the serving version locally); the next deploy's
        # plan sees the stale tags and writes them again.
        best_effort=True,
    )]


KIND = Kind("record", want, converge=converge)
