"""The webserver behind the load balancer (only with ``META_DEPLOYER_LB_LISTENER_ARN``) (pure).

An HTTP target group ``meta-deployer-webserver`` (port 3000, targets by IP, health check
``/server_info``, which the Dagster webserver answers without a login) and one listener rule:
host header ``META_DEPLOYER_PLATFORM_HOST``, actions **authenticate** (``authenticate-oidc`` or
``authenticate-cognito``, Order 1) **then forward** (Order 2). Dagster OSS has no login: the rule is
the only door, and there is no rule without authentication.

AWS rules relied on (unit-tested in tests/test_platform_aws.py against :func:`rule_actions`):

- "Each rule must include exactly one of the following types of actions: forward,
  fixed-response, or redirect, and it must be the last action to be performed"; ``Order`` "is
  required for rules with multiple actions. The action with the lowest value for order is
  performed first" (ELBv2 API reference, ``Action``); :func:`check_actions`.
- ``AuthenticateOidcConfig`` / ``AuthenticateCognitoConfig``: "[HTTPS listeners]" only (same page):
  the plan refuses a listener whose protocol is not HTTPS.
- Rule priorities are unique per listener, 1-50000 (API reference, ``CreateRule``): allocated by
  ``load_balancer.allocate_priority`` from the priorities read, never derived from a hash.
- The OIDC client secret is read from Secrets Manager when the rule is created (an Output of a
  ``GetSecretValue`` read: never in the plan, the dry run or a setting). DescribeRules does not
  return it, so it is not compared; the other fields are.

Publishes ``webserver_target_group`` (its ARN, an Output, or None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meta_deployer.errors import SettingsError
from meta_deployer.platforms.aws.common import PlanError, tag_list
from meta_deployer.platforms.aws.engine import Call, Context, Kind, Output, Scope
from meta_deployer.platforms.aws.resources.load_balancer import MAX_PRIORITY, MIN_PRIORITY, allocate_priority
from meta_deployer.platforms.aws.resources.platform.common import (
    TARGET_GROUP,
    WEBSERVER,
    WEBSERVER_PORT,
    PlatformInputs,
    platform_tags,
)
from meta_deployer.settings import PlatformAwsSettings

HEALTH_CHECK_PATH = "/server_info"
AUTH_TYPES = {"oidc": "authenticate-oidc", "cognito": "authenticate-cognito"}
#: Action types that end a rule (ELBv2 ``Action``: exactly one, and last).
TERMINAL_ACTIONS = ("forward", "fixed-response", "redirect")
SECRET_CALL = "webserver.oidc-secret"


@dataclass(frozen=True)
class Exposure:
    """The target group and the authenticated rule."""

    listener_arn: str
    vpc_id: str
    host: str
    auth: str
    auth_config: dict[str, Any]
    client_secret_arn: str | None
    tags: dict[str, str]


def auth_config(platform: PlatformAwsSettings) -> tuple[str, dict[str, Any], str | None]:
    """``(action type, its config without the secret, the secret's ARN)`` from the settings."""
    if platform.auth == "oidc":
        required = {
            "META_DEPLOYER_OIDC_ISSUER": platform.oidc_issuer,
            "META_DEPLOYER_OIDC_AUTHORIZATION_ENDPOINT": platform.oidc_authorization_endpoint,
            "META_DEPLOYER_OIDC_TOKEN_ENDPOINT": platform.oidc_token_endpoint,
            "META_DEPLOYER_OIDC_USER_INFO_ENDPOINT": platform.oidc_user_info_endpoint,
            "META_DEPLOYER_OIDC_CLIENT_ID": platform.oidc_client_id,
            "META_DEPLOYER_OIDC_CLIENT_SECRET_ARN": platform.oidc_client_secret_arn,
        }
        _require(required, "oidc")
        return AUTH_TYPES["oidc"], {
            "Issuer": platform.oidc_issuer, "AuthorizationEndpoint": platform.oidc_authorization_endpoint,
            "TokenEndpoint": platform.oidc_token_endpoint, "UserInfoEndpoint": platform.oidc_user_info_endpoint,
            "ClientId": platform.oidc_client_id, "OnUnauthenticatedRequest": "authenticate",
        }, platform.oidc_client_secret_arn
    if platform.auth == "cognito":
        required = {
            "META_DEPLOYER_COGNITO_USER_POOL_ARN": platform.cognito_user_pool_arn,
            "META_DEPLOYER_COGNITO_CLIENT_ID": platform.cognito_client_id,
            "META_DEPLOYER_COGNITO_DOMAIN": platform.cognito_domain,
        }
        _require(required, "cognito")
        return AUTH_TYPES["cognito"], {
            "UserPoolArn": platform.cognito_user_pool_arn, "UserPoolClientId": platform.cognito_client_id,
            "UserPoolDomain": platform.cognito_domain, "OnUnauthenticatedRequest": "authenticate",
        }, None
    raise SettingsError(
        "META_DEPLOYER_LB_LISTENER_ARN is set but META_DEPLOYER_PLATFORM_AUTH is not: the webserver is only put behind "
        "the load balancer with a login in front of it; set META_DEPLOYER_PLATFORM_AUTH=oidc or cognito (and its settings)"
    )


def _require(values: dict[str, str | None], kind: str) -> None:
    missing = [var for var, value in values.items() if not value]
    if missing:
        raise SettingsError(f"META_DEPLOYER_PLATFORM_AUTH={kind} needs {', '.join(missing)}")


def want(inputs: PlatformInputs) -> Exposure | None:
    s, p = inputs.settings, inputs.platform
    if not s.lb_listener_arn:
        return None
    if not s.vpc_id:
        raise PlanError("META_DEPLOYER_VPC_ID must be set when META_DEPLOYER_LB_LISTENER_ARN is (the target group lives in it)")
    if not p.host:
        raise SettingsError("META_DEPLOYER_PLATFORM_HOST must be set when META_DEPLOYER_LB_LISTENER_ARN is (the rule's host header)")
    kind, config, secret = auth_config(p)
    return Exposure(s.lb_listener_arn, s.vpc_id, p.host, kind, config, secret, platform_tags(WEBSERVER))


def rule_actions(want: Exposure, target_group: Any, client_secret: Any = None) -> list[dict[str, Any]]:
    """Authenticate (Order 1), then forward (Order 2)."""
    key = "AuthenticateOidcConfig" if want.auth == AUTH_TYPES["oidc"] else "AuthenticateCognitoConfig"
    config = dict(want.auth_config)
    if client_secret is not None:
        config["ClientSecret"] = client_secret
    return [
        {"Type": want.auth, "Order": 1, key: config},
        {"Type": "forward", "Order": 2, "TargetGroupArn": target_group},
    ]


def check_actions(actions: list[dict[str, Any]]) -> None:
    """Raise PlanError unless the actions follow ELBv2's rules and authenticate before anything else."""
    orders = [a.get("Order") for a in actions]
    if len(actions) > 1 and (None in orders or len(set(orders)) != len(orders)):
        raise PlanError("every action of a rule with several actions needs its own Order")
    ordered = sorted(actions, key=lambda a: a.get("Order") or 0)
    terminal = [a for a in ordered if a["Type"] in TERMINAL_ACTIONS]
    if len(terminal) != 1 or ordered[-1] is not terminal[0]:
        raise PlanError("a rule needs exactly one forward, fixed-response or redirect action, and it must be last")
    if not ordered[0]["Type"].startswith("authenticate-"):
        raise PlanError("the webserver's rule must authenticate before it forwards")


def _projection(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What we compare of a rule's actions (DescribeRules leaves the client secret out; AWS adds defaults)."""
    out = []
    for a in sorted(actions, key=lambda a: a.get("Order") or 0):
        item: dict[str, Any] = {"Type": a["Type"], "Order": a.get("Order")}
        if a["Type"] == "forward":
            item["TargetGroupArn"] = a.get("TargetGroupArn") or ((a.get("ForwardConfig") or {}).get("TargetGroups") or [{}])[0].get("TargetGroupArn")
        for key in ("AuthenticateOidcConfig", "AuthenticateCognitoConfig"):
            if key in a:
                item[key] = {k: v for k, v in a[key].items() if k in _COMPARED}
        out.append(item)
    return out


_COMPARED = ("Issuer", "AuthorizationEndpoint", "TokenEndpoint", "UserInfoEndpoint", "ClientId", "UserPoolArn",
             "UserPoolClientId", "UserPoolDomain")


def read(gw: Any, scope: Scope) -> dict[str, Any] | None:
    listener_arn = scope.settings.lb_listener_arn
    target_group = gw.find_target_group(TARGET_GROUP)
    rules = gw.listener_rules(listener_arn) if listener_arn else []
    arn = (target_group or {}).get("TargetGroupArn")
    rule = next((r for r in rules if arn and any(
        a.get("TargetGroupArn") == arn or any(t.get("TargetGroupArn") == arn for t in (a.get("ForwardConfig") or {}).get("TargetGroups", []))
        for a in r.get("Actions", []))), None)
    listener = gw.listener(listener_arn) if listener_arn and not scope.removal else None
    taken = tuple(int(r["Priority"]) for r in rules if str(r.get("Priority", "")).isdigit())
    return {"target_group": target_group, "rule": rule, "priorities": taken, "listener": listener}


def converge(want: Exposure | None, have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    if want is None:
        ctx.values["webserver_target_group"] = None
        return []
    listener = have.get("listener")
    if listener is None:
        raise PlanError(f"listener {want.listener_arn} (META_DEPLOYER_LB_LISTENER_ARN) does not exist")
    if listener.get("Protocol") != "HTTPS":
        raise PlanError(
            f"listener {want.listener_arn} is {listener.get('Protocol')}: authenticate-oidc and authenticate-cognito "
            "work only on HTTPS listeners, and the webserver is never served without them"
        )
    steps: list[Call] = []
    if have.get("target_group") is None:
        steps.append(Call(
            "webserver.target-group", "elbv2", "CreateTargetGroup",
            {"Name": TARGET_GROUP, "Protocol": "HTTP", "Port": WEBSERVER_PORT, "VpcId": want.vpc_id, "TargetType": "ip",
             "HealthCheckEnabled": True, "HealthCheckProtocol": "HTTP", "HealthCheckPath": HEALTH_CHECK_PATH,
             "Matcher": {"HttpCode": "200"}, "Tags": tag_list(want.tags)},
            f"create target group {TARGET_GROUP} (HTTP {WEBSERVER_PORT}, health {HEALTH_CHECK_PATH})",
            f"target group {TARGET_GROUP}",
        ))
        tg: Any = Output("webserver.target-group", "TargetGroups.0.TargetGroupArn")
    else:
        tg = have["target_group"]["TargetGroupArn"]
    ctx.values["webserver_target_group"] = tg
    rule = have.get("rule")
    conditions = [{"Field": "host-header", "HostHeaderConfig": {"Values": [want.host]}}]
    secret_steps: list[Call] = []
    secret: Any = None
    if want.client_secret_arn:
        secret_steps.append(Call(
            SECRET_CALL, "secretsmanager", "GetSecretValue", {"SecretId": want.client_secret_arn},
            f"read the OIDC client secret {want.client_secret_arn} (never printed)", f"secret {want.client_secret_arn}",
        ))
        secret = Output(SECRET_CALL, "SecretString")
    actions = rule_actions(want, tg, secret)
    check_actions(actions)
    if rule is None:
        priority = allocate_priority(have.get("priorities", ()))
        assert MIN_PRIORITY <= priority <= MAX_PRIORITY
        steps += secret_steps
        steps.append(Call(
            "webserver.rule", "elbv2", "CreateRule",
            {"ListenerArn": want.listener_arn, "Priority": priority, "Conditions": conditions, "Actions": actions,
             "Tags": tag_list(want.tags)},
            f"create listener rule host={want.host} priority={priority}: {want.auth}, then forward to {TARGET_GROUP}",
            f"listener rule for {want.host}",
        ))
    elif _projection(rule.get("Actions", [])) != _projection(rule_actions(want, tg)) or [
        v for c in rule.get("Conditions", []) for v in (c.get("HostHeaderConfig") or {}).get("Values", c.get("Values", []))
    ] != [want.host]:
        steps += secret_steps
        steps.append(Call(
            "webserver.rule.modify", "elbv2", "ModifyRule",
            {"RuleArn": rule["RuleArn"], "Conditions": conditions, "Actions": actions},
            f"update listener rule of {want.host}: {want.auth}, then forward to {TARGET_GROUP}", f"listener rule {rule['RuleArn']}",
        ))
    return steps


def remove(have: dict[str, Any] | None, ctx: Context) -> list[Call]:
    have = have or {}
    steps = []
    if have.get("rule") is not None:
        arn = have["rule"]["RuleArn"]
        steps.append(Call("webserver.rule.delete", "elbv2", "DeleteRule", {"RuleArn": arn},
                          f"delete listener rule {arn.rsplit('/', 1)[-1]}", f"listener rule {arn}", ok=("RuleNotFound",)))
    if have.get("target_group") is not None:
        arn = have["target_group"]["TargetGroupArn"]
        steps.append(Call("webserver.target-group.delete", "elbv2", "DeleteTargetGroup", {"TargetGroupArn": arn},
                          f"delete target group {TARGET_GROUP}", f"target group {TARGET_GROUP}", ok=("TargetGroupNotFound",),
                          release_timeout_s=300.0))
    return steps


KIND = Kind("platform_webserver_lb", want, read, converge, remove, removal_rank=25)
