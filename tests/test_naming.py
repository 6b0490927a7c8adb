"""Derived names: deterministic, within AWS limits, never colliding."""

import pytest

from meta_deployer import naming


def test_names_fit_aws_limits_for_the_longest_repo_name():
    name = "a" * naming.MAX_NAME_LENGTH
    assert len(naming.task_role(name)) <= 64
    assert len(naming.target_group(name)) <= 32
    assert len(naming.cloud_map_service(name)) <= 63
    assert naming.task_role(name) == f"dagster-repo-{name}"  # no shortening needed


def test_shortened_names_differ_for_long_names_sharing_a_prefix():
    a, b = "x" * 30 + "-alpha", "x" * 30 + "-bravo"
    assert naming.target_group(a) != naming.target_group(b)
    assert naming.target_group(a) == naming.target_group(a)


def test_prefix_and_resource_names():
    assert naming.s3_prefix("sales") == "repos/sales"
    assert naming.log_group("sales") == "/dagster/repos/sales"
    assert naming.ecr_repository("sales") == "dagster/sales"
    assert naming.container_name("sales") == "dagster-repo-sales"


@pytest.mark.parametrize("bad", ["../x", "a/b", "A", "shared", "a" * 41, "x;rm"])
def test_every_derived_name_validates_its_input(bad):
    with pytest.raises(ValueError):
        naming.s3_prefix(bad)
