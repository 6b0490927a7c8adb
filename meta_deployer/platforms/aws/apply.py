"""Observe one repo's AWS resources, and execute plans through the gateway (side effects).

``observe_repo`` reads live state into a :class:`~meta_deployer.platforms.aws.plan.ObservedRepo`
using only read calls. ``apply`` runs a :class:`~meta_deployer.platforms.aws.plan.Plan`
action by action, each dispatched to one gateway method; values created along
the way (a Cloud Map service ARN, a target group ARN, a new task definition
revision) fill the plan's :class:`~meta_deployer.platforms.aws.plan.Ref` placeholders.

``wait_stable`` polls the ECS service with a hard timeout and a configurable
interval. When the rollout does not settle (timeout, or the deployment
circuit breaker rolled it back) it raises :class:`UnhealthyError` carrying the
service events, the stopped tasks' reasons and the last lines of the repo's
log group. Nothing before it is undone: the previous revision keeps serving
(ECS keeps it running until the new one is healthy), and the deployment
record tags still describe it, because they are written only after a stable
rollout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from meta_deployer import naming
from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.aws.plan import (
    CONTAINER_NAME,
    GRPC_PORT,
    Action,
    CreateDiscoveryService,
    CreateListenerRule,
    CreateLogGroup,
    CreateRole,
    CreateService,
    CreateTargetGroup,
    DeleteDiscoveryService,
    DeleteEcrRepository,
    DeleteListenerRule,
    DeleteLogGroup,
    DeleteRole,
    DeleteRolePolicy,
    DeleteS3Prefix,
    DeleteService,
    DeleteTargetGroup,
    DeregisterTaskDefinitions,
    ObservedRepo,
    Plan,
    PutRolePolicy,
    Ref,
    RegisterTaskDefinition,
    ScaleServiceToZero,
    SetLogRetention,
    TagService,
    UpdateDiscoveryTtl,
    UpdateService,
    UpdateTrustPolicy,
    WaitStable,
    revision_of,
    rollout_failed,
    service_is_stable,
)
from meta_deployer.errors import AwsOperationError, TransientAwsError, UnhealthyError

Log = Callable[[str], None]
#: How many service events, stopped tasks and log lines an UnhealthyError carries.
FAILURE_EVENTS = 8
FAILURE_TASKS = 3
FAILURE_LOG_LINES = 20
#: Cloud Map refuses to delete a service while ECS still deregisters its instances.
DISCOVERY_DELETE_POLL_S = 2.0
#: How long a delete waits for AWS to release a resource still in use.
DEFAULT_RELEASE_TIMEOUT_S = 300.0


def observe_repo(
    gateway: AwsGateway,
    name: str,
    *,
    cluster: str,
    namespace: str,
    policy_name: str,
    lb_listener_arn: str | None,
    for_removal: bool = False,
    purge: bool = False,
    bucket: str | None = None,
) -> ObservedRepo:
    """Read the live state of ``name``'s resources (read calls only, run concurrently).

    The reads are independent (a Cloud Map service needs its namespace, a rule
    its target group: those pairs run in sequence), so they run on a small
    thread pool; boto3 clients are thread-safe. A no-op deploy costs one round
    trip of latency instead of eight.
    """
    role_name = naming.task_role(name)
    family = naming.task_family(name)

    def role() -> tuple[Any, Any, tuple[str, ...]]:
        found = gateway.get_role(role_name)
        if found is None:
            return None, None, ()
        if for_removal:
            return found, None, tuple(gateway.list_role_policies(role_name))
        return found, gateway.get_role_policy(role_name, policy_name), ()

    def discovery() -> tuple[Any, Any]:
        ns = gateway.find_namespace(namespace)
        return ns, gateway.find_discovery_service(ns["Id"], naming.cloud_map_service(name)) if ns else None

    def load_balancing() -> tuple[Any, Any]:
        if not (lb_listener_arn or for_removal):
            return None, None
        target_group = gateway.find_target_group(naming.target_group(name))
        if target_group is None or not lb_listener_arn:
            return target_group, None
        return target_group, gateway.find_rule(lb_listener_arn, target_group["TargetGroupArn"])

    reads: dict[str, Callable[[], Any]] = {
        "role": role,
        "discovery": discovery,
        "load_balancing": load_balancing,
        "service": lambda: gateway.get_service(cluster, naming.ecs_service(name)),
        "active": lambda: tuple(gateway.task_definition_arns(family)),
    }
    if not for_removal:
        reads["task_definition"] = lambda: gateway.latest_task_definition(family)
    if not for_removal or purge:
        reads["log_group"] = lambda: gateway.get_log_group(naming.log_group(name))
    if purge:
        reads["inactive"] = lambda: tuple(gateway.task_definition_arns(family, "INACTIVE"))
        reads["ecr"] = lambda: gateway.ecr_repository_exists(naming.ecr_repository(name))
        if bucket:
            reads["s3"] = lambda: gateway.has_objects(bucket, f"{naming.s3_prefix(name)}/")
    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="observe") as pool:
        futures = {key: pool.submit(fn) for key, fn in reads.items()}
        got = {key: future.result() for key, future in futures.items()}  # re-raises the first error
    found_role, role_policy, role_policies = got["role"]
    ns, discovered = got["discovery"]
    target_group, rule = got["load_balancing"]
    return ObservedRepo(
        role=found_role,
        role_policy=role_policy,
        role_policies=role_policies,
        log_group=got.get("log_group"),
        namespace_id=ns["Id"] if ns else None,
        discovery=discovered,
        target_group=target_group,
        rule=rule,
        task_definition=got.get("task_definition"),
        active_revisions=got["active"],
        inactive_revisions=got.get("inactive", ()),
        service=got["service"],
        ecr_repository=bool(got.get("ecr", False)),
        s3_objects=bool(got.get("s3", False)),
    )


class Executor:
    """Runs a plan's actions in order through the gateway."""

    def __init__(self, gateway: AwsGateway, log: Log, poll_interval_s: float):
        self.gateway = gateway
        self.log = log
        self.poll_interval_s = poll_interval_s
        self.refs: dict[Ref, str] = {}
        self.results: dict[str, Any] = {}

    def resolve(self, value: Any) -> Any:
        """The value of a Ref filled in by an earlier action (other values unchanged)."""
        if isinstance(value, Ref):
            if value not in self.refs:
                raise AwsOperationError(f"plan error: {value} was used before the action that creates it ran")
            return self.refs[value]
        return value

    def run(self, plan: Plan) -> dict[str, Any]:
        """Execute every action of ``plan`` in order; return what was learned."""
        for i, action in enumerate(plan.actions, 1):
            self.log(f"[{plan.name}] {i}/{len(plan.actions)} {action.describe()}")
            self.execute(action)
        return self.results

    def _service_request(self, request: str, registry: Any, target_group: Any, task_definition: Any) -> dict[str, Any]:
        body = json.loads(request)
        body["taskDefinition"] = self.resolve(task_definition)
        body["serviceRegistries"] = [{"registryArn": self.resolve(registry)}]
        tg = self.resolve(target_group)
        if tg is not None:
            body["loadBalancers"] = [{"targetGroupArn": tg, "containerName": CONTAINER_NAME, "containerPort": GRPC_PORT}]
        return body

    def _retire_rolled_back(self, cluster: str, name: str, revision: str, exc: UnhealthyError) -> None:
        """After a rollback, deregister the failed revision registered by this apply.

        EcsRunLauncher runs use the family's latest ACTIVE revision; once the
        circuit breaker has put the service back on the previous revision, the
        failed one must not stay the latest.
        """
        service = self.gateway.get_service(cluster, name) or {}
        serving = revision_of(service.get("taskDefinition") or "")
        if serving and serving != revision_of(revision):
            self.gateway.deregister_task_definition(revision)
            exc.args = (f"{exc.args[0]}\nDeregistered {revision_of(revision)}; runs keep using {serving}.",)
            self.log(f"[{name}] deregistered the failed revision {revision_of(revision)}; {serving} keeps serving")

    def _until_released(self, call: Callable[[], None], timeout_s: float) -> None:
        """Retry ``call`` while AWS reports the resource still in use, up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                call()
                return
            except TransientAwsError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(min(DISCOVERY_DELETE_POLL_S, max(self.poll_interval_s, 0.01)))

    def execute(self, action: Action) -> None:  # noqa: C901 - one branch per action type
        """Dispatch one action to its gateway call."""
        gw = self.gateway
        match action:
            case CreateLogGroup(name=name, tags=tags):
                gw.create_log_group(name, tags)
            case SetLogRetention(name=name, days=days):
                gw.put_retention(name, days)
            case CreateRole(name=name, trust_policy=trust, tags=tags):
                gw.create_role(name, trust, tags, "meta_deployer task role: this repo's S3 prefix only")
            case UpdateTrustPolicy(role=role, trust_policy=trust):
                gw.update_trust_policy(role, trust)
            case PutRolePolicy(role=role, policy_name=policy, document=document):
                gw.put_role_policy(role, policy, document)
            case CreateDiscoveryService(name=name, namespace_id=ns_id, ttl=ttl, tags=tags):
                created = gw.create_discovery_service(ns_id, name, ttl, tags)
                self.refs[Ref("cloud-map-service", name)] = created["Arn"]
            case UpdateDiscoveryTtl(name=name, service_id=sid, ttl=ttl):
                gw.update_discovery_ttl(sid, name, ttl)
            case CreateTargetGroup(name=name, vpc_id=vpc, tags=tags):
                self.refs[Ref("target-group", name)] = gw.create_target_group(name, vpc, GRPC_PORT, tags)
            case CreateListenerRule(listener_arn=listener, priority=priority, host=host, target_group=tg, tags=tags):
                gw.create_rule(listener, priority, host, self.resolve(tg), tags)
            case RegisterTaskDefinition(family=family, definition=definition, tags=tags):
                arn = gw.register_task_definition(json.loads(definition), tags)
                self.refs[Ref("task-definition", family)] = revision_of(arn)
                self.results["task_definition"] = revision_of(arn)
            case CreateService(request=request, name=name, task_definition=td, registry=reg, target_group=tg, tags=tags):
                body = self._service_request(request, reg, tg, td)
                body.update(serviceName=name, launchType="FARGATE", tags=[{"key": k, "value": v} for k, v in tags.items()],
                            propagateTags="SERVICE", enableECSManagedTags=True, schedulingStrategy="REPLICA")
                try:
                    service = gw.create_service(body)
                except AwsOperationError as exc:
                    if getattr(exc, "code", None) == "ClusterNotFoundException":
                        raise AwsOperationError(f"{exc}. Run 'make bootstrap' to create the cluster, or set META_DEPLOYER_ECS_CLUSTER") from exc
                    raise
                self.refs[Ref("ecs-service", name)] = service["serviceArn"]
                # Some ECS implementations (moto) drop deploymentConfiguration and the grace
                # period on create; converge them now rather than on the next deploy.
                if (
                    service.get("deploymentConfiguration", {}).get("deploymentCircuitBreaker") != body["deploymentConfiguration"]["deploymentCircuitBreaker"]
                    or service.get("healthCheckGracePeriodSeconds") != body["healthCheckGracePeriodSeconds"]
                ):
                    gw.update_service(
                        {
                            "cluster": body["cluster"],
                            "service": name,
                            "deploymentConfiguration": body["deploymentConfiguration"],
                            "healthCheckGracePeriodSeconds": body["healthCheckGracePeriodSeconds"],
                        }
                    )
            case UpdateService(request=request, name=name, task_definition=td, registry=reg, target_group=tg, fields=fields):
                body = self._service_request(request, reg, tg, td)
                if "loadBalancers" in fields and "loadBalancers" not in body:
                    body["loadBalancers"] = []  # detach: the load balancer setting was removed
                # Send only what differs: every UpdateService field can start a new deployment.
                gw.update_service({"cluster": body["cluster"], "service": name, **{f: body[f] for f in fields}})
            case WaitStable(cluster=cluster, name=name, task_definition=td, log_group=log_group, timeout_s=timeout):
                try:
                    self.results["service"] = wait_stable(
                        gw, cluster, name, self.resolve(td), log_group, timeout, self.poll_interval_s, self.log
                    )
                except UnhealthyError as exc:
                    if isinstance(td, Ref):
                        self._retire_rolled_back(cluster, name, self.resolve(td), exc)
                    raise
            case TagService(arn=arn, tags=tags):
                gw.tag_ecs_resource(self.resolve(arn), tags)
            case DeregisterTaskDefinitions(arns=arns, delete=delete):
                for arn in arns:
                    gw.deregister_task_definition(arn)
                if delete:
                    gw.delete_task_definitions(list(arns))
            case ScaleServiceToZero(cluster=cluster, name=name):
                gw.update_service({"cluster": cluster, "service": name, "desiredCount": 0})
            case DeleteService(cluster=cluster, name=name):
                gw.delete_service(cluster, name)
            case DeleteDiscoveryService(name=name, service_id=sid, timeout_s=timeout):
                # Cloud Map says ResourceInUse until ECS has deregistered the stopped tasks.
                self._until_released(lambda: gw.delete_discovery_service(sid, name), timeout)
            case DeleteListenerRule(arn=arn):
                gw.delete_rule(arn)
            case DeleteTargetGroup(name=name, arn=arn):
                # ResourceInUse while the deleted service still drains from it.
                self._until_released(lambda: gw.delete_target_group(arn, name), DEFAULT_RELEASE_TIMEOUT_S)
            case DeleteRolePolicy(role=role, policy_name=policy):
                gw.delete_role_policy(role, policy)
            case DeleteRole(name=name):
                gw.delete_role(name)
            case DeleteLogGroup(name=name):
                gw.delete_log_group(name)
            case DeleteEcrRepository(name=name):
                gw.delete_ecr_repository(name)
            case DeleteS3Prefix(bucket=bucket, prefix=prefix):
                self.results["deleted_objects"] = gw.delete_prefix(bucket, prefix)
            case _:
                raise AwsOperationError(f"no executor for action {type(action).__name__}")


def apply(plan: Plan, gateway: AwsGateway, log: Log, poll_interval_s: float = 10.0) -> dict[str, Any]:
    """Execute ``plan``; return what was learned (new revision, final service...)."""
    return Executor(gateway, log, poll_interval_s).run(plan)


def wait_stable(
    gateway: AwsGateway,
    cluster: str,
    name: str,
    task_definition: str,
    log_group: str,
    timeout_s: float,
    poll_interval_s: float,
    log: Log,
) -> dict[str, Any]:
    """Poll until the service runs ``task_definition`` stably; raise UnhealthyError otherwise."""
    deadline = time.monotonic() + timeout_s
    last_state = None
    service: dict[str, Any] | None = None
    while True:
        service = gateway.get_service(cluster, name)
        if service is None:
            raise UnhealthyError(f"ECS service {name} in cluster {cluster} disappeared while waiting for it to be stable")
        if service_is_stable(service, task_definition):
            log(f"[{name}] stable: {service.get('runningCount')}/{service.get('desiredCount')} running on {revision_of(task_definition)}")
            return service
        failed = rollout_failed(service, task_definition)
        if failed:
            raise UnhealthyError(failure_report(gateway, service, cluster, name, log_group, f"the deployment circuit breaker failed the rollout: {failed}"))
        state = status_line(service)
        if state != last_state:
            log(f"[{name}] waiting: {state}")
            last_state = state
        if time.monotonic() >= deadline:
            raise UnhealthyError(
                failure_report(gateway, service, cluster, name, log_group, f"not stable within {timeout_s:g}s ({state})")
            )
        time.sleep(max(0.0, min(poll_interval_s, deadline - time.monotonic())))


def status_line(service: dict[str, Any]) -> str:
    """``running 0/1, rollout IN_PROGRESS, 2 deployments`` for a described service."""
    deployments = service.get("deployments") or []
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), {})
    return (
        f"running {service.get('runningCount', 0)}/{service.get('desiredCount', 0)}, "
        f"rollout {primary.get('rolloutState', 'unknown')}, {len(deployments)} deployment(s)"
    )


def failure_report(
    gateway: AwsGateway, service: dict[str, Any], cluster: str, name: str, log_group: str, why: str
) -> str:
    """A readable failure: what happened, events, stopped tasks, last log lines, and what still serves."""
    lines = [
        f"ECS service {name} in cluster {cluster}: {why}.",
        "The previous version (if any) keeps serving and the workspace entry is unchanged.",
    ]
    events = service.get("events") or []
    if events:
        lines.append("Recent service events:")
        lines += [f"  {e.get('createdAt', '')} {e.get('message', '')}".rstrip() for e in events[:FAILURE_EVENTS]]
    try:
        tasks = gateway.stopped_tasks(cluster, name, FAILURE_TASKS)
    except AwsOperationError as exc:
        tasks = []
        lines.append(f"(could not list stopped tasks: {exc})")
    if tasks:
        lines.append("Stopped tasks:")
        for task in tasks:
            reasons = [
                f"{c.get('name')}: exit {c.get('exitCode')} {c.get('reason', '')}".strip()
                for c in task.get("containers", [])
            ]
            lines.append(f"  {task.get('taskArn', '').rsplit('/', 1)[-1]}: {task.get('stoppedReason', 'no reason given')}; {'; '.join(reasons)}")
    else:
        lines.append("Stopped tasks: none reported.")
    try:
        events_log = gateway.recent_log_events(log_group, FAILURE_LOG_LINES)
    except AwsOperationError as exc:
        events_log = []
        lines.append(f"(could not read log group {log_group}: {exc})")
    if events_log:
        lines.append(f"Last {len(events_log)} line(s) of {log_group}:")
        lines += [f"  {e.get('message', '').rstrip()}" for e in events_log]
    else:
        lines.append(f"Log group {log_group}: no lines yet.")
    return "\n".join(lines)
