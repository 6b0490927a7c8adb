"""Pure tests of single resource kinds: the task definition value object, tags, listener rule priorities."""

from __future__ import annotations

import copy
import re

import pytest

from meta_deployer.platforms.aws import plan as p
from meta_deployer.platforms.aws.engine import Context, Scope
from meta_deployer.platforms.aws.resources import load_balancer
from test_aws_plan import SETTINGS, as_live, desired, spec

SECRET = {"name": "DB_PASSWORD", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dagster/sales/db"}


def td_with_secret():
    return p.TaskDefinition(desired(spec(secrets=[SECRET])).task_definition, {})


def leaf_paths(value, path=()):
    """Every leaf of a request: (path of keys and indexes)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaf_paths(v, (*path, i))
    else:
        yield path


def at(data, path):
    for key in path[:-1]:
        data = data[key]
    return data, path[-1]


def test_an_unchanged_definition_matches_its_described_form():
    td = td_with_secret()
    assert td.matches(as_live(dict(td.request)))
    assert p.normalise(td.request) == p.normalise(as_live(dict(td.request)))
    newer_api = as_live(dict(td.request))
    newer_api["enableFaultInjection"] = False
    newer_api["containerDefinitions"][0]["versionConsistency"] = "enabled"
    assert td.matches(newer_api)
    newer_api["enableFaultInjection"] = True
    assert td.differences(newer_api) == ["enableFaultInjection"]


@pytest.mark.parametrize("path", list(leaf_paths(td_with_secret().request)), ids=str)
def test_changing_any_field_we_set_is_a_difference(path):
    td = td_with_secret()
    live = as_live(copy.deepcopy(dict(td.request)))
    parent, key = at(live, path)
    parent[key] = (parent[key] + 1) if isinstance(parent[key], int) and not isinstance(parent[key], bool) else (
        (not parent[key]) if isinstance(parent[key], bool) else f"{parent[key]}-changed"
    )
    assert not td.matches(live), path


@pytest.mark.parametrize("path", list(leaf_paths(td_with_secret().request)), ids=str)
def test_a_field_we_set_that_is_missing_live_is_a_difference(path):
    td = td_with_secret()
    live = as_live(copy.deepcopy(dict(td.request)))
    parent, key = at(live, path)
    del parent[key]
    assert not td.matches(live), path


def test_a_field_live_has_and_we_no_longer_set_is_a_difference():
    """The one-sided projection missed these: the desired side dropped an env var, a secret, a field."""
    old = td_with_secret()
    live = as_live(dict(old.request))
    fewer_env = copy.deepcopy(dict(old.request))
    fewer_env["containerDefinitions"][0]["environment"] = fewer_env["containerDefinitions"][0]["environment"][1:]
    assert "containerDefinitions[0].environment" in p.TaskDefinition(fewer_env, {}).differences(live)
    no_secret = copy.deepcopy(dict(old.request))
    no_secret["containerDefinitions"][0]["secrets"] = []
    assert "containerDefinitions[0].secrets" in p.TaskDefinition(no_secret, {}).differences(live)
    no_health = copy.deepcopy(dict(old.request))
    del no_health["containerDefinitions"][0]["healthCheck"]
    assert not p.TaskDefinition(no_health, {}).matches(live)


def test_an_env_var_removed_from_the_spec_registers_a_new_revision():
    before = desired(spec(environment=[{"name": "FOO", "value": "1"}, {"name": "BAR", "value": "2"}]))
    after = desired(spec(environment=[{"name": "FOO", "value": "1"}]))
    live = as_live(before.task_definition)
    plan = p.plan(after, {**_applied(before), "task_definition": live})
    assert plan.operations[:3] == ["ecs.RegisterTaskDefinition", "ecs.RunTaskToCompletion", "ecs.UpdateService"]


def _applied(d):
    from test_aws_plan import observed_after

    return observed_after(d)


# -- tags (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_Tag.html) --------------

#: The written rule: letters, numbers and spaces representable in UTF-8, and + - = . _ : / @;
#: keys 1-128 characters, values 0-256 characters; no key or value may start with "aws:".
AWS_TAG_CHARS = re.compile(r"^[\w\s+\-=.:/@]*$", re.UNICODE)


def valid_tag(key: str, value: str) -> bool:
    return (
        1 <= len(key) <= 128 and len(value) <= 256 and bool(AWS_TAG_CHARS.match(key)) and bool(AWS_TAG_CHARS.match(value))
        and not key.lower().startswith("aws:")
    )


@pytest.mark.parametrize("branch", ["fix#12", "feat/ü-naïve", "a" * 300, "x,y;z!", "release(1)", "aws:evil", ""])
def test_record_tags_follow_the_aws_tag_rule(branch):
    from meta_deployer.platforms.aws.common import RepoInputs  # noqa: F401 - the kinds' input type

    d = p.desired_repo(
        spec(), "reg/dagster/sales:x", "sha256:" + "ab" * 32, "c" * 40, branch, SETTINGS,
        p.AwsContext("123456789012", "eu-west-1"), desired().inputs.server,
    )
    for key, value in d.record.items():
        assert valid_tag(key, value), (key, value)
    assert d.record[p.TAG_BRANCH] == p.tag_value(branch)


def test_tag_key_and_value_rules():
    assert p.tag_value("fix#12") == "fix_12"
    assert p.tag_value("ok: a+b=c.d_e/f@g -h") == "ok: a+b=c.d_e/f@g -h"
    assert len(p.tag_value("v" * 1000)) == 256
    assert len(p.tag_key("k" * 1000)) == 128
    assert not p.tag_key("aws:x").lower().startswith("aws:") and not p.tag_key("AWS:x").lower().startswith("aws:")
    assert valid_tag(p.tag_key("a#b"), p.tag_value("ü#"))


# -- listener rule priorities (https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateRule.html:
#    "A listener can't have multiple rules with the same priority", valid range 1-50000) -----------


def test_priority_is_the_lowest_free_one_on_the_listener():
    assert load_balancer.allocate_priority(()) == 1
    assert load_balancer.allocate_priority((1, 2, 4)) == 3
    assert load_balancer.allocate_priority(range(1, 50_000)) == 50_000
    with pytest.raises(p.PlanError, match="no free rule priority"):
        load_balancer.allocate_priority(range(1, 50_001))


def test_a_new_rule_never_takes_a_priority_in_use():
    settings = p.EcsSettings(**{**SETTINGS.__dict__, "lb_listener_arn": "arn:listener"})
    want = load_balancer.want(desired(settings=settings).inputs)
    ctx = Context(Scope("sales", settings), {})
    taken = (1, 2, 3, 5)
    steps = load_balancer.converge(want, {"target_group": None, "rule": None, "priorities": taken}, ctx)
    rule = next(s for s in steps if s.operation == "CreateRule")
    assert rule.params["Priority"] == 4 and rule.params["Priority"] not in taken
