"""The one module that talks to AWS: a typed facade over boto3 (side effects only).

``AwsGateway`` is built from a boto3 ``Session``; its clients are created by
its constructor (never at import time) with botocore's ``standard`` or
``adaptive`` retry mode, so throttling and other transient errors are retried
by botocore itself. boto3 reads ``AWS_ENDPOINT_URL`` and the region from the
environment, which is how the tests reach a moto server over HTTP.

Rules every method follows:

- errors are classified by ``e.response["Error"]["Code"]``, never by text;
- "already exists" on a create and "not found" on a delete are success;
- a ``describe``/``get`` of something missing returns ``None``;
- every other failure becomes :class:`AwsOperationError` (or
  :class:`TransientAwsError`) naming the call and the resource.

The plans' steps go through :meth:`AwsGateway.call` (any service, any
operation, the same rules); the typed methods are the reads the resource kinds
use, and what ``make bootstrap`` and the logs need.

Every API call made through the gateway is recorded in ``calls`` (through a
botocore ``before-call`` hook), which is how tests and the bench count
mutating calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError as BotoConnectionError

from meta_deployer.errors import AwsOperationError, TransientAwsError, WriteConflict

SERVICES = ("ecs", "ecr", "iam", "logs", "servicediscovery", "elbv2", "sts", "s3", "secretsmanager", "codebuild")
#: Operations that only read; everything else counts as mutating.
READ_PREFIXES = ("Describe", "List", "Get", "Head", "Filter", "Discover", "BatchGet")
#: Error codes a retry (later, by the step's RetryPolicy) may fix; botocore already retried them.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "ServerException",
        "ResourceInUse",
        "ResourceInUseException",
        "ConcurrentModification",
        "ConcurrentModificationException",
        "OperationAborted",
    }
)
#: S3 conditional writes and deletes (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html,
#: .../conditional-deletes.html): a condition that does not hold is ``412 PreconditionFailed``; an ``If-Match``
#: on a key that no longer exists is ``404 NoSuchKey``; two conditional requests racing on one key give the loser
#: ``409 ConditionalRequestConflict`` ("on a 409 failure you should retry": PutObject API reference).
CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412", "NoSuchKey", "404"})
CONDITION_RACE_CODES = frozenset({"ConditionalRequestConflict", "409"})
#: How many times a conditional request that lost a race (409) is sent again before it counts as a conflict.
CONDITION_RACE_ATTEMPTS = 3


@dataclass(frozen=True)
class Call:
    """One recorded API call."""

    service: str
    operation: str

    @property
    def mutating(self) -> bool:
        """True unless the operation only reads (Describe/List/Get/Head/Filter/Discover/BatchGet)."""
        return not self.operation.startswith(READ_PREFIXES)

    def __str__(self) -> str:
        return f"{self.service}.{self.operation}"


def _tags_list(tags: Mapping[str, str], key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
    return [{key: k, value: v} for k, v in sorted(tags.items())]


def _tags_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    result = {}
    for tag in tags or []:
        k = tag.get("Key", tag.get("key"))
        v = tag.get("Value", tag.get("value", ""))
        if k is not None:
            result[k] = v
    return result


class AwsGateway:
    """Typed facade over the AWS APIs the deployer uses; the only boto3 user."""

    def __init__(
        self,
        session: boto3.Session | None = None,
        *,
        retry_mode: str = "standard",
        max_attempts: int = 8,
    ):
        self.session = session or boto3.Session()
        self.calls: list[Call] = []
        config = Config(retries={"mode": retry_mode, "total_max_attempts": max_attempts}, user_agent_extra="meta-deployer")
        self.ecs = self._client("ecs", config)
        self.ecr = self._client("ecr", config)
        self.iam = self._client("iam", config)
        self.logs = self._client("logs", config)
        self.servicediscovery = self._client("servicediscovery", config)
        self.elbv2 = self._client("elbv2", config)
        self.sts = self._client("sts", config)
        self.s3 = self._client("s3", config)
        self.secretsmanager = self._client("secretsmanager", config)
        self.codebuild = self._client("codebuild", config)
        self._identity: tuple[str, str] | None = None
        self._config = config
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {name: getattr(self, name) for name in SERVICES}

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` (one of SERVICES, or created on first use, recorded alike)."""
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._client(service, self._config)
            return self._clients[service]

    def call(
        self, service: str, operation: str, params: Mapping[str, Any], *, resource: str, ok: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """Any API call: ``operation`` (``CreateLogGroup``) of ``service`` with ``params``.

        Returns the response, or None when the error code is in ``ok`` ("already
        exists" on a create, "not found" on a delete). Other errors become
        :class:`AwsOperationError` or :class:`TransientAwsError` naming the call
        and ``resource``, as every gateway method does.
        """
        return self._call(getattr(self.client(service), xform_name(operation)), resource, ok=ok, **params)

    def _client(self, service: str, config: Config) -> Any:
        client = self.session.client(service, config=config)

        def record(model: Any, **_: Any) -> None:
            self.calls.append(Call(service, model.name))

        client.meta.events.register("before-call", record)
        return client

    # -- bookkeeping -------------------------------------------------------
    @property
    def region(self) -> str:
        """The region the clients talk to (from AWS_REGION/AWS_DEFAULT_REGION or the session)."""
        return self.ecs.meta.region_name

    def mutating_calls(self, since: int = 0) -> list[Call]:
        """Mutating calls recorded from index ``since`` on."""
        return [c for c in self.calls[since:] if c.mutating]

    def _pages(self, client: Any, operation: str, resource: str, *, ok: tuple[str, ...] = (), **kwargs: Any) -> list[dict[str, Any]]:
        """Every page of a paginated ``operation``; an ``ok`` error code gives no pages."""
        paginator = client.get_paginator(operation)
        pages = self._call(lambda: list(paginator.paginate(**kwargs)), resource, ok=ok, _operation=operation)
        return pages or []

    def _call(
        self, fn: Callable[..., Any], resource: str, *, ok: tuple[str, ...] = (), _operation: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``fn(**kwargs)``; return None for an ``ok`` error code; wrap the rest."""
        operation = _operation or getattr(fn, "__name__", "call")
        try:
            return fn(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = error.get("Code", "Unknown")
            if code in ok:
                return None
            cls = TransientAwsError if code in TRANSIENT_CODES else AwsOperationError
            wrapped = cls(f"AWS {operation} on {resource} failed: {code}: {error.get('Message', '')}".rstrip(": "))
            wrapped.code = code  # type: ignore[attr-defined]  # lets callers add a hint by code
            raise wrapped from exc
        except BotoConnectionError as exc:
            raise TransientAwsError(f"AWS {operation} on {resource} could not reach the endpoint: {exc}") from exc
        except BotoCoreError as exc:
            raise AwsOperationError(f"AWS {operation} on {resource} failed: {exc}") from exc

    # -- STS ---------------------------------------------------------------
    def identity(self) -> tuple[str, str]:
        """``(account_id, partition)`` of the caller (cached)."""
        if self._identity is None:
            arn = self._call(self.sts.get_caller_identity, "caller identity")["Arn"]
            parts = arn.split(":")
            self._identity = (parts[4], parts[1])
        return self._identity

    # -- IAM ---------------------------------------------------------------
    def get_role(self, name: str) -> dict[str, Any] | None:
        """The role with its decoded trust policy and tags, or None."""
        result = self._call(self.iam.get_role, f"IAM role {name}", ok=("NoSuchEntity",), RoleName=name)
        if result is None:
            return None
        role = result["Role"]
        doc = role.get("AssumeRolePolicyDocument")
        if isinstance(doc, str):
            role["AssumeRolePolicyDocument"] = json.loads(doc)
        role["TagsDict"] = _tags_dict(role.get("Tags"))
        return role

    def get_role_policy(self, role: str, policy: str) -> dict[str, Any] | None:
        """The decoded inline policy document, or None."""
        result = self._call(
            self.iam.get_role_policy, f"inline policy {policy} of IAM role {role}", ok=("NoSuchEntity",),
            RoleName=role, PolicyName=policy,
        )
        if result is None:
            return None
        doc = result["PolicyDocument"]
        return json.loads(doc) if isinstance(doc, str) else doc

    def list_role_policies(self, role: str) -> list[str]:
        """Names of the role's inline policies ([] when the role is missing)."""
        result = self._call(self.iam.list_role_policies, f"IAM role {role}", ok=("NoSuchEntity",), RoleName=role)
        return list(result["PolicyNames"]) if result else []

    def create_role(self, name: str, trust_policy: str, tags: Mapping[str, str], description: str) -> None:
        """Create the role with its trust policy and tags (exists already: success)."""
        self._call(
            self.iam.create_role, f"IAM role {name}", ok=("EntityAlreadyExists",),
            RoleName=name, AssumeRolePolicyDocument=trust_policy, Tags=_tags_list(tags), Description=description,
        )

    def put_role_policy(self, role: str, policy: str, document: str) -> None:
        """Create or replace one inline policy of the role."""
        self._call(
            self.iam.put_role_policy, f"inline policy {policy} of IAM role {role}",
            RoleName=role, PolicyName=policy, PolicyDocument=document,
        )

    def delete_role_policy(self, role: str, policy: str) -> None:
        """Delete one inline policy (missing: success)."""
        self._call(
            self.iam.delete_role_policy, f"inline policy {policy} of IAM role {role}", ok=("NoSuchEntity",),
            RoleName=role, PolicyName=policy,
        )

    def delete_role(self, name: str) -> None:
        """Delete the role (missing: success); its inline policies must be gone first."""
        self._call(self.iam.delete_role, f"IAM role {name}", ok=("NoSuchEntity",), RoleName=name)

    # -- CloudWatch Logs -----------------------------------------------------
    def get_log_group(self, name: str) -> dict[str, Any] | None:
        """The log group (with retentionInDays), or None."""
        result = self._call(self.logs.describe_log_groups, f"log group {name}", logGroupNamePrefix=name)
        return next((g for g in result.get("logGroups", []) if g["logGroupName"] == name), None)

    def create_log_group(self, name: str, tags: Mapping[str, str]) -> None:
        """Create the log group with tags (exists already: success)."""
        self._call(
            self.logs.create_log_group, f"log group {name}", ok=("ResourceAlreadyExistsException",),
            logGroupName=name, tags=dict(tags),
        )

    def put_retention(self, name: str, days: int) -> None:
        """Set the log group's retention in days."""
        self._call(self.logs.put_retention_policy, f"log group {name}", logGroupName=name, retentionInDays=days)

    def delete_log_group(self, name: str) -> None:
        """Delete the log group and its events (missing: success)."""
        self._call(self.logs.delete_log_group, f"log group {name}", ok=("ResourceNotFoundException",), logGroupName=name)

    def recent_log_events(self, group: str, tail: int, streams: int = 10) -> list[dict[str, Any]]:
        """The last ``tail`` events of ``group`` across its most recent streams, oldest first.

        Reads backwards from the end of each stream, so the cost does not grow with
        the size of the group; empty when the group is missing.
        """
        result = self._call(
            self.logs.describe_log_streams, f"log group {group}", ok=("ResourceNotFoundException",),
            logGroupName=group, orderBy="LastEventTime", descending=True, limit=streams,
        )
        events: list[dict[str, Any]] = []
        for stream in (result or {}).get("logStreams", []):
            page = self._call(
                self.logs.get_log_events, f"log stream {stream['logStreamName']} of {group}",
                ok=("ResourceNotFoundException",), logGroupName=group, logStreamName=stream["logStreamName"],
                startFromHead=False, limit=max(1, min(tail, 10000)),
            )
            for event in (page or {}).get("events", []):
                events.append({**event, "logStreamName": stream["logStreamName"]})
        events.sort(key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))
        return events[-tail:] if tail > 0 else events

    def log_events(self, group: str, start_ms: int | None = None, limit: int = 10000) -> list[dict[str, Any]]:
        """Events of every stream in ``group`` from ``start_ms`` on (oldest first); empty when missing."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"logGroupName": group, "limit": min(limit, 10000)}
        if start_ms is not None:
            kwargs["startTime"] = start_ms
        while True:
            result = self._call(
                self.logs.filter_log_events, f"log group {group}", ok=("ResourceNotFoundException",), **kwargs
            )
            if result is None:
                return []
            events.extend(result.get("events", []))
            token = result.get("nextToken")
            if not token or len(events) >= limit or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token
        events.sort(key=lambda e: (e.get("timestamp", 0), e.get("ingestionTime", 0)))
        return events

    # -- Cloud Map -----------------------------------------------------------
    def find_namespace(self, name: str) -> dict[str, Any] | None:
        """The private DNS namespace called ``name``, or None."""
        pages = self._pages(self.servicediscovery, "list_namespaces", f"Cloud Map namespace {name}")
        for page in pages:
            for ns in page.get("Namespaces", []):
                if ns["Name"] == name and ns.get("Type") == "DNS_PRIVATE":
                    return ns
        return None

    def find_discovery_service(self, namespace_id: str, name: str) -> dict[str, Any] | None:
        """The Cloud Map service ``name`` in the namespace, or None."""
        pages = self._pages(
            self.servicediscovery, "list_services", f"Cloud Map service {name}",
            Filters=[{"Name": "NAMESPACE_ID", "Values": [namespace_id], "Condition": "EQ"}],
        )
        for page in pages:
            for svc in page.get("Services", []):
                if svc["Name"] == name:
                    return svc
        return None

    # -- ELBv2 ---------------------------------------------------------------
    def find_target_group(self, name: str) -> dict[str, Any] | None:
        """The target group called ``name``, or None."""
        result = self._call(
            self.elbv2.describe_target_groups, f"target group {name}", ok=("TargetGroupNotFound",), Names=[name]
        )
        groups = result.get("TargetGroups", []) if result else []
        return groups[0] if groups else None

    def listener_rules(self, listener_arn: str) -> list[dict[str, Any]]:
        """Every rule of the listener (the default one included); [] when the listener is missing."""
        rules: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"ListenerArn": listener_arn}
        while True:
            result = self._call(
                self.elbv2.describe_rules, f"rules of listener {listener_arn}", ok=("ListenerNotFound",), **kwargs
            )
            rules += (result or {}).get("Rules", [])
            marker = (result or {}).get("NextMarker")
            if not marker:
                return rules
            kwargs["Marker"] = marker

    # -- ECS -----------------------------------------------------------------
    def get_cluster(self, name: str) -> dict[str, Any] | None:
        """The ACTIVE cluster called ``name``, or None."""
        result = self._call(self.ecs.describe_clusters, f"ECS cluster {name}", clusters=[name])
        active = [c for c in result.get("clusters", []) if c.get("status") == "ACTIVE"]
        return active[0] if active else None

    def latest_task_definition(self, family: str) -> dict[str, Any] | None:
        """The latest ACTIVE revision of ``family`` with its tags under ``tagsDict``, or None."""
        result = self._call(
            self.ecs.describe_task_definition, f"task definition {family}", ok=("ClientException",),
            taskDefinition=family, include=["TAGS"],
        )
        if result is None:
            return None
        definition = result["taskDefinition"]
        if definition.get("status") != "ACTIVE":
            return None
        definition["tagsDict"] = _tags_dict(result.get("tags"))
        return definition

    def task_definition_arns(self, family: str, status: str = "ACTIVE") -> list[str]:
        """ARNs of ``family``'s revisions with ``status``, oldest first."""
        pages = self._pages(
            self.ecs, "list_task_definitions", f"task definition {family}", familyPrefix=family, status=status, sort="ASC"
        )
        arns = [arn for page in pages for arn in page.get("taskDefinitionArns", [])]
        mine = [a for a in arns if a.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family]
        return sorted(mine, key=lambda a: int(a.rsplit(":", 1)[-1]))

    def get_service(self, cluster: str, name: str) -> dict[str, Any] | None:
        """The ACTIVE (or DRAINING) service with ``tagsDict``, or None when missing or INACTIVE."""
        services = self.describe_services(cluster, [name])
        return services[0] if services else None

    def describe_services(self, cluster: str, names: list[str]) -> list[dict[str, Any]]:
        """The named services that are not INACTIVE, each with ``tagsDict``."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(names), 10):  # DescribeServices takes at most 10 names
            result = self._call(
                self.ecs.describe_services, f"ECS services {', '.join(names[start:start + 10])} in cluster {cluster}",
                ok=("ClusterNotFoundException",), cluster=cluster, services=names[start : start + 10], include=["TAGS"],
            )
            for svc in result.get("services", []) if result else []:
                if svc.get("status") != "INACTIVE":
                    svc["tagsDict"] = _tags_dict(svc.get("tags"))
                    found.append(svc)
        return found

    def list_service_names(self, cluster: str) -> list[str]:
        """Names of every service in the cluster ([] when the cluster is missing)."""
        pages = self._pages(
            self.ecs, "list_services", f"ECS cluster {cluster}", ok=("ClusterNotFoundException",), cluster=cluster
        )
        return sorted(arn.rsplit("/", 1)[-1] for page in pages for arn in page.get("serviceArns", []))

    def delete_service(self, cluster: str, name: str) -> None:
        """Delete the service (missing or inactive: success); scale it to 0 first."""
        self._call(
            self.ecs.delete_service, f"ECS service {name} in cluster {cluster}",
            ok=("ServiceNotFoundException", "ServiceNotActiveException", "ClusterNotFoundException"),
            cluster=cluster, service=name,
        )

    def stopped_tasks(self, cluster: str, service: str, limit: int = 5) -> list[dict[str, Any]]:
        """The service's most recently stopped tasks (with stoppedReason)."""
        result = self._call(
            self.ecs.list_tasks, f"tasks of ECS service {service}", ok=("ServiceNotFoundException", "ClusterNotFoundException"),
            cluster=cluster, serviceName=service, desiredStatus="STOPPED",
        )
        arns = (result or {}).get("taskArns", [])[:limit]
        if not arns:
            return []
        described = self._call(self.ecs.describe_tasks, f"tasks of ECS service {service}", cluster=cluster, tasks=arns)
        return described.get("tasks", [])

    def describe_task(self, cluster: str, task_arn: str) -> dict[str, Any] | None:
        """One task as DescribeTasks reports it (lastStatus, containers[].exitCode, stoppedReason), or None."""
        result = self._call(
            self.ecs.describe_tasks, f"task {task_arn} in cluster {cluster}", cluster=cluster, tasks=[task_arn]
        )
        tasks = (result or {}).get("tasks") or []
        return tasks[0] if tasks else None

    def log_stream_tail(self, group: str, stream: str, tail: int) -> list[dict[str, Any]]:
        """The last ``tail`` events of one log stream, oldest first; empty when it does not exist (yet)."""
        result = self._call(
            self.logs.get_log_events, f"log stream {stream} of {group}", ok=("ResourceNotFoundException",),
            logGroupName=group, logStreamName=stream, startFromHead=False, limit=max(1, min(tail, 10000)),
        )
        return list((result or {}).get("events") or [])

    def service_tasks(self, cluster: str, service: str) -> list[dict[str, Any]]:
        """Every task of the service whose desired status is RUNNING, described ([] when the
        cluster or service is missing). ListTasks is read page by page; DescribeTasks gets at
        most 100 ARNs a call (the rules are in ``meta_deployer.replicas``)."""
        from meta_deployer.replicas import describe_batches, list_tasks_params

        resource = f"tasks of ECS service {service} in cluster {cluster}"
        missing = ("ServiceNotFoundException", "ClusterNotFoundException")
        pages = self._pages(self.ecs, "list_tasks", resource, ok=missing, **list_tasks_params(cluster, service))
        arns = [arn for page in pages for arn in page.get("taskArns", [])]
        tasks: list[dict[str, Any]] = []
        for batch in describe_batches(arns):
            result = self._call(self.ecs.describe_tasks, resource, ok=missing, cluster=cluster, tasks=batch)
            tasks.extend((result or {}).get("tasks", []))
        return tasks

    # -- ECR -----------------------------------------------------------------
    def delete_ecr_repository(self, name: str) -> None:
        """Delete the ECR repository and its images (missing: success)."""
        self._call(
            self.ecr.delete_repository, f"ECR repository {name}", ok=("RepositoryNotFoundException",),
            repositoryName=name, force=True,
        )

    def ecr_repository_exists(self, name: str) -> bool:
        """True when the ECR repository exists."""
        result = self._call(
            self.ecr.describe_repositories, f"ECR repository {name}", ok=("RepositoryNotFoundException",),
            repositoryNames=[name],
        )
        return bool(result and result.get("repositories"))

    # -- S3 ------------------------------------------------------------------
    def bucket_exists(self, bucket: str) -> bool:
        """True when the bucket exists (and is reachable with these credentials)."""
        result = self._call(
            self.s3.head_bucket, f"S3 bucket {bucket}", ok=("404", "NoSuchBucket", "NotFound"), Bucket=bucket
        )
        return result is not None

    def existing_keys(self, bucket: str, keys: list[str]) -> set[str]:
        """Which of ``keys`` exist (one listing per distinct top-level folder)."""
        found: set[str] = set()
        for top in sorted({k.split("/", 1)[0] + "/" for k in keys}):
            result = self._call(
                self.s3.list_objects_v2, f"s3://{bucket}/{top}", ok=("NoSuchBucket",), Bucket=bucket, Prefix=top,
                MaxKeys=1000,
            )
            found.update(o["Key"] for o in (result or {}).get("Contents", []))
        return found & set(keys)

    def has_objects(self, bucket: str, prefix: str) -> bool:
        """True when at least one object exists under ``prefix``."""
        result = self._call(
            self.s3.list_objects_v2, f"s3://{bucket}/{prefix}", ok=("NoSuchBucket",), Bucket=bucket, Prefix=prefix, MaxKeys=1
        )
        return bool((result or {}).get("KeyCount") or (result or {}).get("Contents"))

    def get_lifecycle_rules(self, bucket: str) -> list[dict[str, Any]]:
        """The bucket's lifecycle rules ([] when none)."""
        result = self._call(
            self.s3.get_bucket_lifecycle_configuration, f"lifecycle of S3 bucket {bucket}",
            ok=("NoSuchLifecycleConfiguration", "NoSuchBucket"), Bucket=bucket,
        )
        return (result or {}).get("Rules", [])

    def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object under ``prefix`` (must end with '/'); return how many."""
        if not prefix.endswith("/"):
            raise ValueError(f"refusing to delete {prefix!r}: a prefix must end with '/'")
        pages = self._pages(self.s3, "list_objects_v2", f"s3://{bucket}/{prefix}", ok=("NoSuchBucket",), Bucket=bucket, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            self._call(
                self.s3.delete_objects, f"s3://{bucket}/{prefix}", Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
        return len(keys)

    # -- S3 objects with conditions (shared state: records and leases) ------
    def get_object(self, bucket: str, key: str, max_bytes: int) -> tuple[bytes, str] | None:
        """``(body, etag)`` of the object, or None when it does not exist; at most ``max_bytes + 1`` bytes are read."""
        result = self._call(
            self.s3.get_object, f"s3://{bucket}/{key}", ok=("NoSuchKey", "404"), Bucket=bucket, Key=key
        )
        if result is None:
            return None
        with result["Body"] as body:
            return body.read(max_bytes + 1), result["ETag"]

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key under ``prefix``, sorted ([] when the bucket is missing)."""
        pages = self._pages(self.s3, "list_objects_v2", f"s3://{bucket}/{prefix}", ok=("NoSuchBucket",), Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def put_object_if(self, bucket: str, key: str, body: bytes, *, if_match: str | None) -> str:
        """Write ``body`` only if the object is unchanged: ``if_match`` its ETag, or None for "only if it does not
        exist" (``If-None-Match: *``). Returns the new ETag; :class:`WriteConflict` when the condition fails.
        There is no unconditional write here on purpose."""
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        result = self._conditional(
            self.s3.put_object, f"s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=body,
            ContentType="application/json", **condition,
        )
        return result["ETag"]

    def create_object(self, bucket: str, key: str, body: bytes, metadata: dict[str, str]) -> bool:
        """Write an immutable object once (``If-None-Match: *``): True when written, False when it existed."""
        try:
            self._conditional(
                self.s3.put_object, f"s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=body,
                Metadata=metadata, IfNoneMatch="*",
            )
        except WriteConflict:
            return False
        return True

    def object_metadata(self, bucket: str, key: str) -> dict[str, str] | None:
        """The user metadata of an object, or None when it does not exist."""
        result = self._call(self.s3.head_object, f"s3://{bucket}/{key}", ok=("NoSuchKey", "404"), Bucket=bucket, Key=key)
        return None if result is None else dict(result.get("Metadata") or {})

    def delete_object_if(self, bucket: str, key: str, *, if_match: str) -> None:
        """Delete the object only if its ETag is still ``if_match``; :class:`WriteConflict` when it is not (or gone)."""
        self._conditional(self.s3.delete_object, f"s3://{bucket}/{key}", Bucket=bucket, Key=key, IfMatch=if_match)

    def _conditional(self, fn: Callable[..., Any], resource: str, **kwargs: Any) -> Any:
        for attempt in range(CONDITION_RACE_ATTEMPTS):
            try:
                return self._call(fn, resource, **kwargs)
            except AwsOperationError as exc:
                code = getattr(exc, "code", None)
                if code in CONDITION_RACE_CODES and attempt + 1 < CONDITION_RACE_ATTEMPTS:
                    continue
                if code in CONDITION_FAILED_CODES or code in CONDITION_RACE_CODES:
                    raise WriteConflict(f"{resource} changed since it was read ({code})") from exc
                raise
        raise AssertionError("unreachable")
    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        """Write one object."""
        self._call(self.s3.put_object, f"s3://{bucket}/{key}", Bucket=bucket, Key=key, Body=body)

    # -- ECR images ------------------------------------------------------------
    def ecr_image_digest(self, repository: str, tag: str) -> str | None:
        """The digest of ``repository:tag`` in the account's ECR, or None when either is missing."""
        result = self._call(
            self.ecr.describe_images, f"ECR image {repository}:{tag}",
            ok=("ImageNotFoundException", "RepositoryNotFoundException"),
            repositoryName=repository, imageIds=[{"imageTag": tag}],
        )
        details = (result or {}).get("imageDetails") or []
        return details[0].get("imageDigest") if details else None

    # -- CodeBuild ---------------------------------------------------------------
    def get_codebuild_project(self, name: str) -> dict[str, Any] | None:
        """The CodeBuild project called ``name``, or None."""
        result = self._call(self.codebuild.batch_get_projects, f"CodeBuild project {name}", names=[name])
        return next((p for p in (result or {}).get("projects", []) if p.get("name") == name), None)

    def start_build(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """StartBuild with ``params``; the build (``id``, ``buildStatus``, ...)."""
        result = self._call(self.codebuild.start_build, f"CodeBuild project {params.get('projectName')}", **params)
        return result["build"]

    def get_build(self, build_id: str) -> dict[str, Any] | None:
        """The build (status, phases, logs), or None when CodeBuild does not know it."""
        result = self._call(self.codebuild.batch_get_builds, f"CodeBuild build {build_id}", ids=[build_id])
        return next((b for b in (result or {}).get("builds", []) if b.get("id") == build_id), None)

    def log_events_after(self, group: str, stream: str, token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Events of one stream after ``token`` (GetLogEvents, oldest first), and the token to read on from.

        A stream that does not exist yet gives no events and the same token: CodeBuild creates it
        once the build has started.
        """
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        result = self._call(
            self.logs.get_log_events, f"log stream {stream} of {group}", ok=("ResourceNotFoundException",), **kwargs
        )
        if result is None:
            return [], token
        return list(result.get("events", [])), result.get("nextForwardToken") or token

    # -- make platform: EFS, EC2 security groups, the listener ----------------------
    def find_file_system(self, creation_token: str) -> dict[str, Any] | None:
        """The EFS file system created with ``creation_token`` (not being deleted), or None."""
        efs = self.client("efs")
        result = self._call(efs.describe_file_systems, f"EFS file system {creation_token}", CreationToken=creation_token)
        found = [f for f in (result or {}).get("FileSystems", []) if f.get("LifeCycleState") not in ("deleting", "deleted")]
        return found[0] if found else None

    def access_points(self, file_system_id: str) -> list[dict[str, Any]]:
        """The file system's access points."""
        efs = self.client("efs")
        result = self._call(efs.describe_access_points, f"access points of {file_system_id}", FileSystemId=file_system_id)
        return list((result or {}).get("AccessPoints", []))

    def mount_targets(self, file_system_id: str) -> list[dict[str, Any]]:
        """The file system's mount targets, each with its ``SecurityGroups``."""
        efs = self.client("efs")
        result = self._call(efs.describe_mount_targets, f"mount targets of {file_system_id}", FileSystemId=file_system_id)
        targets = list((result or {}).get("MountTargets", []))
        for target in targets:
            groups = self._call(
                efs.describe_mount_target_security_groups, f"mount target {target['MountTargetId']}",
                MountTargetId=target["MountTargetId"],
            )
            target["SecurityGroups"] = list((groups or {}).get("SecurityGroups", []))
        return targets

    def subnets(self, subnet_ids: list[str]) -> list[dict[str, Any]]:
        """The subnets (with ``AvailabilityZone`` and ``VpcId``), in the order asked."""
        if not subnet_ids:
            return []
        result = self._call(self.client("ec2").describe_subnets, f"subnets {', '.join(subnet_ids)}", SubnetIds=subnet_ids)
        by_id = {s["SubnetId"]: s for s in (result or {}).get("Subnets", [])}
        return [by_id[s] for s in subnet_ids if s in by_id]

    def find_security_group(self, vpc_id: str, name: str) -> dict[str, Any] | None:
        """The security group called ``name`` in the VPC (with ``IpPermissions``), or None."""
        result = self._call(
            self.client("ec2").describe_security_groups, f"security group {name} in {vpc_id}",
            Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}],
        )
        groups = (result or {}).get("SecurityGroups", [])
        return groups[0] if groups else None

    def listener(self, listener_arn: str) -> dict[str, Any] | None:
        """The listener (``Protocol``, ``LoadBalancerArn``) with its load balancer's ``SecurityGroups``, or None."""
        result = self._call(
            self.elbv2.describe_listeners, f"listener {listener_arn}", ok=("ListenerNotFound",), ListenerArns=[listener_arn]
        )
        listeners = (result or {}).get("Listeners", [])
        if not listeners:
            return None
        found = dict(listeners[0])
        balancers = self._call(
            self.elbv2.describe_load_balancers, f"load balancer {found.get('LoadBalancerArn')}",
            LoadBalancerArns=[found["LoadBalancerArn"]],
        )
        found["SecurityGroups"] = [g for lb in (balancers or {}).get("LoadBalancers", []) for g in lb.get("SecurityGroups", [])]
        return found
