"""Shared helpers for the ECS tests (no tests here): a VPC in moto, settings, fake inputs.

Everything runs against a real moto server over HTTP (``AWS_ENDPOINT_URL``);
boto3 is used here only to set up what the deployer expects to exist already
(a VPC, subnets, a security group) and to assert on the resulting AWS state.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import boto3

from meta_deployer.platforms.aws.gateway import AwsGateway
from meta_deployer.platforms.base import Checkout, Published
from meta_deployer.settings import Settings
from meta_deployer.spec import parse_spec

ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


def make_network() -> dict[str, str]:
    """A VPC with two private subnets and a security group; returns the env settings naming them."""
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    # Cloud Map private DNS needs DNS hostnames in the VPC (and moto's RunTask needs them for ENIs).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.40.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)
    ]
    sg = ec2.create_security_group(GroupName="dagster-code", Description="code servers", VpcId=vpc)["GroupId"]
    return {
        "META_DEPLOYER_VPC_ID": vpc,
        "META_DEPLOYER_SUBNETS": ",".join(subnets),
        "META_DEPLOYER_SECURITY_GROUPS": sg,
        "META_DEPLOYER_PLATFORM": "ecs",
        "META_DEPLOYER_BUCKET": "dagster-storage",
        "META_DEPLOYER_ECS_STABILITY_TIMEOUT": "5",
        "META_DEPLOYER_ECS_POLL_INTERVAL": "0.01",
    }


def settings_for(tmp_path: Path, env: dict[str, str], **extra: str) -> Settings:
    return Settings.from_env({"META_DEPLOYER_ROOT": str(tmp_path), **env, **extra})


def spec_for(name: str = "sales", **fields: Any):
    data = {"name": name, "git_url": f"https://example.com/{name}.git", "python_file": "definitions.py", **fields}
    return parse_spec(data, f"repos/{name}/config.yml")


def published_for(name: str, seed: str = "v1") -> Published:
    """A well-formed image reference and digest (no image behind it: ECS in moto never pulls)."""
    digest = "sha256:" + hashlib.sha256(f"{name}:{seed}".encode()).hexdigest()
    return Published(ref=f"{REGISTRY}/dagster/{name}:{seed}", digest=digest, pushed=True)


def checkout_for(name: str, tmp_path: Path, commit_seed: str = "c1") -> Checkout:
    commit = hashlib.sha1(commit_seed.encode()).hexdigest()
    return Checkout(name=name, path=tmp_path / name, commit=commit, branch="main", git_url="https://example.com/x.git", changed=True)


class CallCounter:
    """Counts API calls made through one gateway from a point on."""

    def __init__(self, gateway: AwsGateway):
        self.gateway = gateway
        self.start = len(gateway.calls)

    @property
    def calls(self) -> list[str]:
        return [str(c) for c in self.gateway.calls[self.start :]]

    @property
    def mutating(self) -> list[str]:
        return [str(c) for c in self.gateway.mutating_calls(self.start)]
