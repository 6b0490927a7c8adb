"""AWS side of the ``ecs`` platform.

- :mod:`meta_deployer.platforms.aws.settings`: ``EcsSettings``, read from the environment.
- :mod:`meta_deployer.platforms.aws.plan`: pure; desired resources, ``plan(desired, observed)``.
- :mod:`meta_deployer.platforms.aws.gateway`: the only module that touches boto3.
- :mod:`meta_deployer.platforms.aws.apply`: observes live state and executes plans through the gateway.
"""
