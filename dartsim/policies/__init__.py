"""The sparsity policies dartsim records and replays: a registry (policies/_registry.py)
of one module per policy. DART (policies/dart/) is one of them.

Each module cites what it follows, holds the policy's rules as pure functions of
activations and weights, and registers a `Policy` that says how it records and how replay
charges it. `policies()` lists them; `get_policy(name)` looks one up.
"""

from dartsim.policies._registry import (
    Policy,
    PolicyRecorder,
    PolicySettings,
    get_policy,
    policies,
    policies_help,
    policy_names,
    register,
)

__all__ = [
    "Policy",
    "PolicyRecorder",
    "PolicySettings",
    "get_policy",
    "policies",
    "policies_help",
    "policy_names",
    "register",
]
