"""The platform's three ECS services, their task definitions, log groups and the deployer's
Cloud Map name (pure).

====================  =========  ===============================================================
service               tasks      command (``sh -c``; the local rehearsal's, ``meta_deployer/rehearsal.py``)
====================  =========  ===============================================================
``dagster-webserver`` setting    wait for workspace.yaml, then ``dagster-webserver -h 0.0.0.0 -p 3000 -w /workspace/workspace.yaml``
``dagster-daemon``    exactly 1  wait for workspace.yaml, then ``dagster-daemon run -w /workspace/workspace.yaml``
``meta-deployer``     1          ``dagster instance migrate && meta-deployer render-workspace``, then
                                 ``dagster api grpc -m meta_deployer.definitions -h 0.0.0.0 -p 4266``
====================  =========  ===============================================================

Every container runs the platform image by digest (``inputs.image``), with ``DAGSTER_HOME`` at the
image's baked ``dagster.yaml``, the bucket, and the instance's Postgres fields as ``secrets`` from
``META_DEPLOYER_PG_SECRET_ARN`` (``instance.pg_secrets``: ARNs only). The deployer also gets the
settings it deploys with (:func:`deployer_environment`), ``DAGSTER_CURRENT_IMAGE`` and
``DAGSTER_CONTAINER_CONTEXT`` (:func:`deployer_container_context`; the EFS ids in it are a
:class:`JsonText` until this plan has created them).

Each has its family ``dagster-platform-<component>``, its task role, the execution role
``dagster-platform-execution`` and its log group ``/dagster/platform/<component>``. The workspace
volume (EFS through the access point, transit encryption and IAM authorization on) is mounted at
``/workspace``: read-only in the webserver and the daemon, read-write in the deployer.

The daemon never runs twice (two daemons would launch every queued run twice): its rollouts stop
the old task before the new one starts (maximum 100 %, minimum healthy 0 %).

AWS rules relied on: with an access point, ``rootDirectory`` must be omitted or ``/``, and IAM
authorization needs transit encryption (ECS developer guide, "Specify an Amazon EFS file system in
an Amazon ECS task definition"). Task definitions are compared with ``task_definition.normalise``
(as a repo's), so an unchanged platform registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meta_deployer.platforms.aws.common import CONTAINER_NAME, canonical_json, revision_of, service_is_stable, tag_list
from meta_deployer.platforms.aws.engine import Call, Context, JsonText, Kind, Output, Scope, Step, WaitStable
from meta_deployer.platforms.aws.instance import pg_secrets
from meta_deployer.platforms.aws.resources import discovery, log_group as repo_log_group
from meta_deployer.platforms.aws.resources.platform.common import (
    COMPONENTS,
    DAEMON,
    DEPLOYER,
    DEPLOYER_CLOUD_MAP,
    DEPLOYER_PORT,
    EXECUTION_ROLE,
    SERVICE_NAMES,
    SG_TASKS,
    SG_WEBSERVER,
    WEBSERVER,
    WEBSERVER_PORT,
    WORKSPACE_FILE,
    WORKSPACE_MOUNT,
    PlatformInputs,
    family,
    log_group,
    platform_tags,
    role,
)
from meta_deployer.platforms.aws.resources.task_definition import LOG_STREAM_PREFIX, TaskDefinition
from meta_deployer.platforms.platform_image import DAGSTER_HOME

VOLUME = "workspace"
#: Fargate sizes (cpu units, MiB), each a valid Fargate pair.
SIZES = {WEBSERVER: (1024, 2048), DAEMON: (512, 1024), DEPLOYER: (1024, 2048)}
#: What each process runs once it may start (the local rehearsal's commands, on 0.0.0.0).
SERVE = {
    WEBSERVER: ["dagster-webserver", "-h", "0.0.0.0", "-p", str(WEBSERVER_PORT), "-w", WORKSPACE_FILE],
    DAEMON: ["dagster-daemon", "run", "-w", WORKSPACE_FILE],
    DEPLOYER: ["dagster", "api", "grpc", "-m", "meta_deployer.definitions", "-h", "0.0.0.0", "-p", str(DEPLOYER_PORT)],
}
#: The deployer prepares the instance's tables and the first workspace.yaml (its own location and
#: whatever is deployed, from the records in the bucket) before it serves; the webserver and the
#: daemon wait for that file, so no process reads a workspace that does not exist yet and no two
#: processes create the tables at once (the rehearsal's one-off container does the same).
PREPARE = "dagster instance migrate && meta-deployer render-workspace"
WAIT_FOR_WORKSPACE = f"until [ -f {WORKSPACE_FILE} ]; do echo waiting for {WORKSPACE_FILE}; sleep 5; done"


def _sh(before: str, argv: list[str]) -> list[str]:
    return ["sh", "-c", f"{before} && exec {' '.join(argv)}"]


COMMANDS = {
    WEBSERVER: _sh(WAIT_FOR_WORKSPACE, SERVE[WEBSERVER]),
    DAEMON: _sh(WAIT_FOR_WORKSPACE, SERVE[DAEMON]),
    DEPLOYER: _sh(PREPARE, SERVE[DEPLOYER]),
}
PORTS = {WEBSERVER: WEBSERVER_PORT, DEPLOYER: DEPLOYER_PORT}
HEALTH = {DEPLOYER: ["CMD", "dagster", "api", "grpc-health-check", "-p", str(DEPLOYER_PORT)]}
DEPLOYMENT = {
    WEBSERVER: {"minimumHealthyPercent": 100, "maximumPercent": 200},
    DAEMON: {"minimumHealthyPercent": 0, "maximumPercent": 100},
    DEPLOYER: {"minimumHealthyPercent": 100, "maximumPercent": 200},
}
#: Where the deployer's code server and its runs keep their checkouts (the task's own disk).
DEPLOYER_ROOT, DEPLOYER_WORK_DIR = "/opt/meta_deployer", "/tmp/meta_deployer"


def instance_environment(inputs: PlatformInputs) -> dict[str, str]:
    """What every process that opens the instance gets as plain values (the Postgres fields come as
    ``secrets``): the baked ``dagster.yaml`` and the bucket."""
    return {"DAGSTER_HOME": DAGSTER_HOME, "META_DEPLOYER_BUCKET": inputs.settings.bucket}


def deployer_environment(inputs: PlatformInputs) -> dict[str, str]:
    """What the deployer's code server (and its runs) need to deploy repos on this ECS platform: the
    settings ``make platform`` ran with (``inputs.deployer_settings``: images, the configuration
    repository...; the ECS group as set), then what this topology fixes. No secret value: the
    Postgres secret is named by its ARN, which the deployer passes on to the repos' task definitions."""
    s = inputs.settings
    env = {**inputs.deployer_settings, **s.as_env()}
    env.update({
        "META_DEPLOYER_PLATFORM": "ecs",
        "META_DEPLOYER_STATE": "s3",
        "META_DEPLOYER_ROOT": DEPLOYER_ROOT,
        "META_DEPLOYER_WORK_DIR": DEPLOYER_WORK_DIR,
        "META_DEPLOYER_WORKSPACE": WORKSPACE_FILE,
        "META_DEPLOYER_SELF_SERVER": f"{DEPLOYER_CLOUD_MAP}.{s.namespace}:{DEPLOYER_PORT}",
        "META_DEPLOYER_WEBSERVERS": f"ecs:{s.cluster}/{SERVICE_NAMES[WEBSERVER]}",
        "META_DEPLOYER_WEBSERVER_PORT": str(WEBSERVER_PORT),
        "META_DEPLOYER_ECS_CLUSTER": s.cluster,
        "META_DEPLOYER_NAMESPACE": s.namespace,
        "META_DEPLOYER_SUBNETS": ",".join(s.subnets),
        "META_DEPLOYER_SECURITY_GROUPS": ",".join(s.security_groups),
        "META_DEPLOYER_PG_SECRET_ARN": inputs.pg_secret_arn,
        **instance_environment(inputs),
    })
    return env


def workspace_volume(file_system_id: Any, access_point_id: Any) -> dict[str, Any]:
    """The task definitions' (and the deployer's runs') workspace volume: EFS through the access point."""
    return {"name": VOLUME, "efsVolumeConfiguration": {
        # "/" (or nothing) with an access point; AWS reports "/" back, so we send it.
        "fileSystemId": file_system_id, "rootDirectory": "/", "transitEncryption": "ENABLED",
        "authorizationConfig": {"accessPointId": access_point_id, "iam": "ENABLED"},
    }}


def workspace_mount(read_only: bool) -> dict[str, Any]:
    """Where a container mounts the workspace volume."""
    return {"sourceVolume": VOLUME, "containerPath": WORKSPACE_MOUNT, "readOnly": read_only}


def deployer_container_context(inputs: PlatformInputs, env: Mapping[str, str], file_system_id: Any, access_point_id: Any) -> dict[str, Any]:
    """``DAGSTER_CONTAINER_CONTEXT`` of the deployer's code server: EcsRunLauncher runs each deploy
    run as a task of the deployer's own family (its latest revision: this image, the deployer role,
    the workspace read-write, the Postgres secrets). dagster-aws 0.29 uses ``task_definition_arn`` as
    is when it is set; the role, environment, secrets, volume and mount point are stated too, so that
    the context says by itself what a deploy run gets (and holds if the family is ever left out)."""
    return {"ecs": {
        "task_definition_arn": family(DEPLOYER),
        "container_name": CONTAINER_NAME,
        "task_role_arn": inputs.role_arn(role(DEPLOYER)),
        "execution_role_arn": inputs.role_arn(EXECUTION_ROLE),
        "env_vars": [f"{k}={v}" for k, v in sorted(env.items())],
        "secrets": pg_secrets(inputs.pg_secret_arn),
        "volumes": [workspace_volume(file_system_id, access_point_id)],
        "mount_points": [workspace_mount(read_only=False)],
    }}


def _json(value: Any, *placeholders: Any) -> Any:
    """``value`` as JSON text now, or a :class:`JsonText` when it holds a value of a call still to run."""
    return JsonText(value) if any(isinstance(p, Output) for p in placeholders) else canonical_json(value)


def container_environment(component: str, inputs: PlatformInputs, file_system_id: Any, access_point_id: Any) -> dict[str, Any]:
    """The container's plain environment (values may be :class:`JsonText` until the EFS exists)."""
    if component != DEPLOYER:
        return dict(instance_environment(inputs))
    env = deployer_environment(inputs)
    context = deployer_container_context(inputs, env, file_system_id, access_point_id)
    return {
        **env,
        "DAGSTER_CURRENT_IMAGE": inputs.image,
        "DAGSTER_CONTAINER_CONTEXT": _json(context, file_system_id, access_point_id),
    }


def task_definition_request(component: str, inputs: PlatformInputs, file_system_id: Any, access_point_id: Any) -> dict[str, Any]:
    """The ``RegisterTaskDefinition`` request (without tags) of one component."""
    cpu, memory = SIZES[component]
    env = container_environment(component, inputs, file_system_id, access_point_id)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": inputs.image,
        "essential": True,
        "memoryReservation": memory,
        "command": COMMANDS[component],
        "environment": [{"name": k, "value": v} for k, v in sorted(env.items())],
        # The instance's Postgres fields, by ARN only: ECS resolves them when the task starts.
        "secrets": pg_secrets(inputs.pg_secret_arn),
        "mountPoints": [workspace_mount(read_only=component != DEPLOYER)],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group(component), "awslogs-region": inputs.region, "awslogs-stream-prefix": LOG_STREAM_PREFIX,
        }},
    }
    if component in PORTS:
        container["portMappings"] = [{"containerPort": PORTS[component], "protocol": "tcp"}]
    if component in HEALTH:
        container["healthCheck"] = {"command": HEALTH[component], "interval": 30, "timeout": 10, "retries": 3, "startPeriod": 60}
    return {
        "family": family(component),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": str(cpu),
        "memory": str(memory),
        "taskRoleArn": inputs.role_arn(role(component)),
        "executionRoleArn": inputs.role_arn(EXECUTION_ROLE),
        "containerDefinitions": [container],
        "volumes": [workspace_volume(file_system_id, access_point_id)],
    }


# -- log groups -----------------------------------------------------------------------


def _log_groups_want(inputs: PlatformInputs) -> list[repo_log_group.LogGroup]:
    return [repo_log_group.LogGroup(log_group(c), inputs.settings.log_retention_days, platform_tags(c)) for c in COMPONENTS]


def _log_groups_read(gw: Any, scope: Scope) -> dict[str, Any]:
    if scope.removal and not scope.purge:
        return {}
    return {log_group(c): gw.get_log_group(log_group(c)) for c in COMPONENTS}


def _log_groups_converge(want: list[repo_log_group.LogGroup], have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    steps: list[Call] = []
    for group in want:
        for call in repo_log_group.converge(group, (have or {}).get(group.name), ctx):
            steps.append(Call(**{**call.__dict__, "id": f"{call.id}.{group.name}"}))
    return steps


def _log_groups_remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    steps: list[Call] = []
    for name, found in sorted((have or {}).items()):
        for call in repo_log_group.remove(found, ctx):
            steps.append(Call(**{**call.__dict__, "id": f"{call.id}.{name}"}))
    return steps


LOG_GROUPS = Kind("platform_log_groups", _log_groups_want, _log_groups_read, _log_groups_converge, _log_groups_remove,
                  removal_rank=50)


# -- the deployer's Cloud Map name ----------------------------------------------------------


def _discovery_want(inputs: PlatformInputs) -> discovery.Discovery:
    return discovery.Discovery(DEPLOYER_CLOUD_MAP, inputs.settings.namespace, discovery.DNS_TTL_S, platform_tags(DEPLOYER))


def _discovery_read(gw: Any, scope: Scope) -> dict[str, Any]:
    ns = gw.find_namespace(scope.settings.namespace)
    found = gw.find_discovery_service(ns["Id"], DEPLOYER_CLOUD_MAP) if ns else None
    return {"namespace_id": ns["Id"] if ns else None, "service": found}


DISCOVERY = Kind("platform_discovery", _discovery_want, _discovery_read, discovery.converge, discovery.remove, removal_rank=20)


# -- task definitions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Definitions:
    """The inputs of the three task definitions (the EFS ids are known only while planning)."""

    inputs: PlatformInputs


def _defs_read(gw: Any, scope: Scope) -> dict[str, Any]:
    if scope.removal:
        return {c: gw.task_definition_arns(family(c)) for c in COMPONENTS}
    return {c: gw.latest_task_definition(family(c)) for c in COMPONENTS}


def _defs_converge(want: Definitions, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    steps: list[Call] = []
    fs, ap = ctx.values["file_system_id"], ctx.values["access_point_id"]
    for component in COMPONENTS:
        td = TaskDefinition(task_definition_request(component, want.inputs, fs, ap), platform_tags(component))
        live = (have or {}).get(component)
        reasons = td.differences(live)
        if not reasons:
            ctx.values[f"td:{component}"] = revision_of(live["taskDefinitionArn"])
            continue
        call_id = f"platform.td.{component}"
        ctx.values[f"td:{component}"] = Output(call_id, "taskDefinition.taskDefinitionArn")
        steps.append(Call(
            call_id, "ecs", "RegisterTaskDefinition", {**td.request, "tags": tag_list(td.tags, "key", "value")},
            f"register task definition {td.family} ({'; '.join(reasons[:3])})", f"task definition {td.family}",
        ))
    return steps


def _defs_remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    return [
        Call(f"platform.td.deregister.{revision_of(arn)}", "ecs", "DeregisterTaskDefinition", {"taskDefinition": arn},
             f"deregister task definition {revision_of(arn)}", f"task definition {revision_of(arn)}", ok=("ClientException",))
        for component in COMPONENTS for arn in (have or {}).get(component) or []
    ]


TASK_DEFINITIONS = Kind("platform_task_definitions", Definitions, _defs_read, _defs_converge, _defs_remove, removal_rank=40)


# -- services ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformService:
    """One of the three services."""

    component: str
    name: str
    cluster: str
    desired_count: int
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    tags: dict[str, str]
    stability_timeout_s: float


def _services_want(inputs: PlatformInputs) -> list[PlatformService]:
    s = inputs.settings
    counts = {WEBSERVER: inputs.platform.webserver_count, DAEMON: 1, DEPLOYER: 1}
    return [
        PlatformService(c, SERVICE_NAMES[c], s.cluster, counts[c], s.subnets, s.security_groups, platform_tags(c),
                        s.stability_timeout_s)
        for c in COMPONENTS
    ]


def _services_read(gw: Any, scope: Scope) -> dict[str, Any]:
    found = gw.describe_services(scope.settings.cluster, [SERVICE_NAMES[c] for c in COMPONENTS])
    return {svc["serviceName"]: svc for svc in found}


def _differs(desired: Any, live: Any) -> bool:
    if isinstance(desired, Mapping):
        return not isinstance(live, Mapping) or any(_differs(v, live.get(k)) for k, v in desired.items())
    return desired != live


def service_request(want: PlatformService, ctx: Context) -> dict[str, Any]:
    """The fields of Create/UpdateService we keep (the task definition and groups may be Outputs)."""
    groups = [*want.security_groups, ctx.values[f"sg:{SG_TASKS}"]]
    if want.component == WEBSERVER:
        groups.append(ctx.values[f"sg:{SG_WEBSERVER}"])
    tg = ctx.values.get("webserver_target_group") if want.component == WEBSERVER else None
    return {
        "taskDefinition": ctx.values[f"td:{want.component}"],
        "desiredCount": want.desired_count,
        "deploymentConfiguration": DEPLOYMENT[want.component],
        "networkConfiguration": {"awsvpcConfiguration": {
            "subnets": list(want.subnets), "securityGroups": groups, "assignPublicIp": "DISABLED"}},
        "serviceRegistries": [{"registryArn": ctx.values["registry"]}] if want.component == DEPLOYER else [],
        "loadBalancers": [{"targetGroupArn": tg, "containerName": CONTAINER_NAME, "containerPort": WEBSERVER_PORT}] if tg else [],
    }


def _changed_fields(request: dict[str, Any], live: dict[str, Any]) -> list[str]:
    fields = []
    if revision_of(str(request["taskDefinition"])) != revision_of(live.get("taskDefinition") or "-"):
        fields.append("taskDefinition")
    if live.get("desiredCount") != request["desiredCount"]:
        fields.append("desiredCount")
    if _differs(request["deploymentConfiguration"], live.get("deploymentConfiguration") or {}):
        fields.append("deploymentConfiguration")
    net, want_net = (live.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}, request["networkConfiguration"]["awsvpcConfiguration"]
    if sorted(net.get("subnets") or []) != sorted(want_net["subnets"]) or sorted(net.get("securityGroups") or []) != sorted(map(str, want_net["securityGroups"])):
        fields.append("networkConfiguration")
    if [r.get("registryArn") for r in live.get("serviceRegistries") or []] != [str(r["registryArn"]) for r in request["serviceRegistries"]]:
        fields.append("serviceRegistries")
    if [lb.get("targetGroupArn") for lb in live.get("loadBalancers") or []] != [str(lb["targetGroupArn"]) for lb in request["loadBalancers"]]:
        fields.append("loadBalancers")
    return fields


def converge_created_settings(response: Mapping[str, Any], sent: Mapping[str, Any]) -> Call | None:
    """Some ECS implementations (moto) drop deploymentConfiguration on create; set it now, not next run."""
    if not _differs(sent["deploymentConfiguration"], (response.get("service") or {}).get("deploymentConfiguration") or {}):
        return None
    return Call(
        f"platform.service.{sent['serviceName']}.fix-created", "ecs", "UpdateService",
        {"cluster": sent["cluster"], "service": sent["serviceName"], "deploymentConfiguration": sent["deploymentConfiguration"]},
        f"set the deployment configuration of ECS service {sent['serviceName']}",
        f"ECS service {sent['serviceName']} in cluster {sent['cluster']}",
    )


def _services_converge(want: list[PlatformService], have: dict[str, Any] | None, ctx: Context) -> list[Step]:
    steps: list[Step] = []
    waits: list[Step] = []
    for svc in want:
        live = (have or {}).get(svc.name)
        request = service_request(svc, ctx)
        resource = f"ECS service {svc.name} in cluster {svc.cluster}"
        changed = False
        if live is None:
            steps.append(Call(
                f"platform.service.{svc.component}", "ecs", "CreateService",
                {**request, "cluster": svc.cluster, "serviceName": svc.name, "launchType": "FARGATE",
                 "tags": tag_list(svc.tags, "key", "value"), "propagateTags": "SERVICE", "enableECSManagedTags": True,
                 "schedulingStrategy": "REPLICA"},
                f"create ECS service {svc.name} ({svc.desired_count} task(s), {request['taskDefinition']})", resource,
                hints=(("ClusterNotFoundException", "Run 'make bootstrap' first"),), follow_up=converge_created_settings,
            ))
            changed = True
        else:
            fields = _changed_fields(request, live)
            if fields:
                steps.append(Call(
                    f"platform.service.{svc.component}.update", "ecs", "UpdateService",
                    {"cluster": svc.cluster, "service": svc.name, **{f: request[f] for f in fields}},
                    f"update ECS service {svc.name} ({', '.join(fields)})", resource,
                ))
                changed = True
        if changed or not service_is_stable(live or {}):
            waits.append(WaitStable(svc.cluster, svc.name, request["taskDefinition"], log_group(svc.component),
                                    svc.stability_timeout_s))
    return steps + waits


def _services_remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    cluster = ctx.scope.settings.cluster
    steps: list[Call] = []
    for name, live in sorted((have or {}).items()):
        resource = f"ECS service {name} in cluster {cluster}"
        if live.get("desiredCount", 0) > 0:
            steps.append(Call(f"platform.service.{name}.scale-down", "ecs", "UpdateService",
                              {"cluster": cluster, "service": name, "desiredCount": 0}, f"scale ECS service {name} to 0", resource))
        steps.append(Call(f"platform.service.{name}.delete", "ecs", "DeleteService", {"cluster": cluster, "service": name},
                          f"delete ECS service {name} from cluster {cluster}", resource,
                          ok=("ServiceNotFoundException", "ServiceNotActiveException", "ClusterNotFoundException")))
    return steps


SERVICES = Kind("platform_services", _services_want, _services_read, _services_converge, _services_remove, removal_rank=10)
