"""A resource kind defined entirely in this test is planned, applied against moto, and planned again as empty.

The toy kind is a Secrets Manager secret with tags: one ``Kind`` (want, read,
converge, remove) built from the engine's generic ``Call`` steps, run by the
same executor as the repo's kinds, touching no other file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from meta_deployer.platforms.aws import engine
from meta_deployer.platforms.aws.apply import apply, observe
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Scope
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.settings import EcsSettings


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    tags: dict[str, str]


def want(inputs: dict[str, str]) -> Secret:
    return Secret(f"dagster/{inputs['repo']}/token", inputs["token"], {"meta-deployer:repo": inputs["repo"]})


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    name = f"dagster/{scope.name}/token"
    described = gw.call("secretsmanager", "DescribeSecret", {"SecretId": name}, resource=f"secret {name}",
                        ok=("ResourceNotFoundException",))
    if described is None:
        return None
    value = gw.call("secretsmanager", "GetSecretValue", {"SecretId": name}, resource=f"secret {name}")
    return {"arn": described["ARN"], "tags": {t["Key"]: t["Value"] for t in described.get("Tags", [])},
            "value": value["SecretString"]}


def converge(want: Secret, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    tags = [{"Key": k, "Value": v} for k, v in sorted(want.tags.items())]
    if have is None:
        return [Call("secret.create", "secretsmanager", "CreateSecret",
                     {"Name": want.name, "SecretString": want.value, "Tags": tags},
                     f"create secret {want.name}", f"secret {want.name}", ok=("ResourceExistsException",))]
    steps = []
    if have["value"] != want.value:
        steps.append(Call("secret.value", "secretsmanager", "PutSecretValue",
                          {"SecretId": have["arn"], "SecretString": want.value},
                          f"put a new value of secret {want.name}", f"secret {want.name}"))
    if any(have["tags"].get(k) != v for k, v in want.tags.items()):
        steps.append(Call("secret.tags", "secretsmanager", "TagResource", {"SecretId": have["arn"], "Tags": tags},
                          f"tag secret {want.name}", f"secret {want.name}"))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    if have is None:
        return []
    return [Call("secret.delete", "secretsmanager", "DeleteSecret",
                 {"SecretId": have["arn"], "ForceDeleteWithoutRecovery": True},
                 f"delete secret {have['arn']}", f"secret {have['arn']}", ok=("ResourceNotFoundException",))]


TOY = Kind("toy_secret", want, read, converge, remove)


def test_a_toy_kind_is_planned_applied_and_planned_again_as_empty(moto):
    gw = AwsGateway()
    scope = Scope("sales", EcsSettings())
    desired = engine.wants([TOY], {"repo": "sales", "token": "t1"})

    first = engine.plan([TOY], desired, observe([TOY], gw, scope), scope)
    assert first.operations == ["secretsmanager.CreateSecret"]
    assert "1. create secret dagster/sales/token" in first.render()
    apply(first, gw, lambda _: None, poll_interval_s=0)
    secret = boto3.client("secretsmanager").get_secret_value(SecretId="dagster/sales/token")
    assert secret["SecretString"] == "t1"

    start = len(gw.calls)
    again = engine.plan([TOY], desired, observe([TOY], gw, scope), scope)
    assert again.steps == () and again.render() == "sales: nothing to do"
    assert gw.mutating_calls(start) == []

    changed = engine.wants([TOY], {"repo": "sales", "token": "t2"})
    update = engine.plan([TOY], changed, observe([TOY], gw, scope), scope)
    assert update.operations == ["secretsmanager.PutSecretValue"]
    apply(update, gw, lambda _: None, poll_interval_s=0)
    assert engine.plan([TOY], changed, observe([TOY], gw, scope), scope).steps == ()

    removal_scope = Scope("sales", EcsSettings(), removal=True)
    removal = engine.plan_removal([TOY], observe([TOY], gw, removal_scope), removal_scope)
    assert removal.operations == ["secretsmanager.DeleteSecret"]
    apply(removal, gw, lambda _: None, poll_interval_s=0)
    assert engine.plan_removal([TOY], observe([TOY], gw, removal_scope), removal_scope).steps == ()
