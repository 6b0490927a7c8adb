"""The example code location deployed by `make dev` through the normal pipeline.

It knows nothing about meta_deployer: a plain Dagster project. Its assets are
stored under repos/hello/assets/ by the IO manager the deployer injects.
"""

import dagster as dg


@dg.asset(description="A greeting.")
def greeting() -> str:
    return "hello from a code location deployed by meta_deployer"


@dg.asset(description="The greeting, shouted.")
def shout(greeting: str) -> str:
    return greeting.upper()


defs = dg.Definitions(assets=[greeting, shout])
