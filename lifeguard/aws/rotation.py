"""The order of a password rotation on AWS, decided (and refused) before any resource is registered.

``DATABASE_URL`` logs in as one of two login roles, the application role (``dbAppUsername``) and its
alternate (``<name>_b``, :func:`migrator.contract.alternate_role`); both hold the DML rights through
one ``NOLOGIN`` role (docs/roles.md). Two config keys drive a rotation:

* ``appPasswordRotation: N`` — the number of rotations *started*. Rotation ``N`` generates a new
  password for role ``N % 2`` (1: the alternate, 2: the application role, ...). ``pulumi up`` writes
  its verifier into the pooler's secret, beside the other role's (the pooler's tasks roll; the role
  ``DATABASE_URL`` uses keeps its verifier), and the pipeline's migration job, which runs after every
  ``up``, sets it in Postgres.
* ``appPasswordSwitched: S`` — the rotation ``DATABASE_URL`` uses: role ``S % 2`` with rotation
  ``S``'s password. Set it to ``N`` once the migration job has run after the ``up`` that started
  rotation ``N``; the next ``up`` switches the secret. The previous role keeps its password (so warm
  functions keep working) until rotation ``N + 1`` changes it.

:func:`plan` refuses, with the keys to set, every order in which a login could fail: a jump by more
than one, starting a rotation before the previous one was switched (it would change the password
``DATABASE_URL`` uses), switching in the same ``up`` that generates the password (the migration job
has not set it in Postgres yet), switching back, or going back. What the last ``up`` deployed is read
from the stack's own outputs (:mod:`lifeguard.aws.deployed`); a stack deployed before rotation
existed counts as rotation 0, switched 0.

A switch needs more than the right order: that the migration job really set rotation ``N``'s verifier in
Postgres. The job records, after a successful run, which rotation's verifiers Postgres holds, in the
stack's SSM parameter (:func:`lifeguard.aws.naming.rotation_parameter_name`, created by the
``MigrationJob``); :func:`check_switch` reads it at preview and refuses a switch to ``N`` unless it says
``N`` (tests/infra/test_infra_rotation.py).

Pure logic, no resource: checked case by case (tests/infra/test_rotation_order.py). The state itself,
:class:`lifeguard.rotation.RotationState`, is the local stack's too.
"""

from __future__ import annotations

from collections.abc import Mapping

from lifeguard.aws.config import PROJECT, DatabaseConfig, InfraConfigError
from lifeguard.rotation import RotationState

ROTATION_KEY = "appPasswordRotation"
SWITCHED_KEY = "appPasswordSwitched"


class RotationOrderError(ValueError):
    """A rotation config that would refuse logins; the message says which key to set to what."""


def record(state: RotationState) -> dict[str, str]:
    """What the stack's record output keeps of ``state`` (strings, as :mod:`lifeguard.aws.deployed` records)."""
    return {ROTATION_KEY: str(state.rotation), SWITCHED_KEY: str(state.switched)}


def deployed_state(record: object) -> RotationState:
    """The state the last ``up`` recorded; rotation 0, switched 0 for a stack that recorded none."""
    if not isinstance(record, Mapping):
        return RotationState()
    rotation, switched = (str(record.get(key, "0")) for key in (ROTATION_KEY, SWITCHED_KEY))
    if not (rotation.isdigit() and switched.isdigit()):
        return RotationState()
    return RotationState(int(rotation), int(switched))


def plan(configured: RotationState, deployed: RotationState) -> RotationState:
    """``configured`` if going there from ``deployed`` in one ``up`` keeps every login working; else refused."""
    n, s = configured.rotation, configured.switched
    rot, sw = f"{PROJECT}:{ROTATION_KEY}", f"{PROJECT}:{SWITCHED_KEY}"
    if n < 0 or s < 0:
        raise RotationOrderError(f"{rot} and {sw} count rotations from 0; got {n} and {s}")
    if s > n:
        raise RotationOrderError(f"{sw} {s} is ahead of {rot} {n}: only a started rotation can be switched to. "
                                 f"Set {sw} to {n} at most")
    if n < deployed.rotation:
        raise RotationOrderError(
            f"{rot} {n} is below the deployed {deployed.rotation}: a rotation cannot be undone (it would give a role "
            f"an older password again). Set {rot} back to {deployed.rotation}")
    if s < deployed.switched:
        raise RotationOrderError(
            f"{sw} {s} is below the deployed {deployed.switched}: DATABASE_URL cannot switch back (the role it would "
            f"log in as again may have a new password by now). Set {sw} back to {deployed.switched}")
    if n > deployed.rotation + 1:
        raise RotationOrderError(
            f"{rot} {deployed.rotation} -> {n} jumps by more than one: each rotation needs its own `pulumi up`, "
            f"migration job and switch. Set {rot} to {deployed.rotation + 1}")
    if n > deployed.rotation and deployed.switched < deployed.rotation:
        raise RotationOrderError(
            f"rotation {deployed.rotation} is not switched yet ({sw} is {deployed.switched}): rotation {n} would "
            f"change the password DATABASE_URL logs in with. Finish it first: set {rot} back to "
            f"{deployed.rotation} and {sw} to {deployed.rotation} (after its migration job ran), `pulumi up`, "
            "then start the next one")
    if s > deployed.switched and s > deployed.rotation:
        raise RotationOrderError(
            f"{sw} {s} in the same `pulumi up` that generates rotation {n}'s password: Postgres gets the new "
            f"verifier only from the migration job that runs after this `up`, so logins would fail until then. Set "
            f"{sw} to {deployed.switched} now; after the pipeline's migration job, set it to {n} and `pulumi up` again")
    return configured


def check_switch(configured: RotationState, deployed: RotationState, recorded: int | None, parameter: str,
                 unreadable: str | None = None) -> None:
    """Refuse moving ``DATABASE_URL`` to rotation ``S`` unless the migration job recorded (``recorded``, read
    from ``parameter``; ``None``: no rotation, or ``unreadable`` says why not) that Postgres holds rotation
    ``S``'s verifiers."""
    s = configured.switched
    if s <= deployed.switched or recorded == s:
        return
    sw = f"{PROJECT}:{SWITCHED_KEY}"
    found = (f"could not be read: {unreadable}" if unreadable is not None
             else "holds no rotation" if recorded is None else f"says rotation {recorded}")
    raise RotationOrderError(
        f"{sw} {s}: the migration job has not recorded that Postgres holds rotation {s}'s password (the parameter "
        f"{parameter} {found}), so every new login through DATABASE_URL would fail. Run the migration job after the "
        f"`up` that started rotation {s} (the pipeline's migrate step, or `lifeguard migrate`) until it succeeds, then "
        f"`pulumi up` again; until then keep {sw} at {deployed.switched}")


def recorded_rotation(parameter: str) -> tuple[int | None, str | None]:
    """The rotation the migration job recorded in ``parameter`` (``None``: none), or why it could not be read."""
    import pulumi_aws as aws  # the pure logic above imports no provider

    try:
        value = aws.ssm.get_parameter(name=parameter).value
    except Exception as exc:
        # Not found (a stack from before the record), no ssm:GetParameter, throttled: no record, so no switch.
        text = str(exc).strip()
        return None, text.splitlines()[0][:300] if text else type(exc).__name__
    text = value.strip()
    return (int(text) if text.isdigit() else None), None


def check_rotation(cfg: DatabaseConfig, region: str) -> RotationState:
    """Before any resource: the configured rotation, or :class:`InfraConfigError` when going there from what
    this stack's last ``up`` recorded would fail logins (:func:`plan`), or when it switches to a rotation the
    migration job has not recorded as set in Postgres (:func:`check_switch`)."""
    from lifeguard.aws import deployed  # it imports the config module too: no cycle at import time
    from lifeguard.aws.naming import rotation_parameter_name

    configured = RotationState(cfg.app_password_rotation, cfg.app_password_switched)
    last = deployed_state(deployed.recorded(deployed.stack_outputs()))
    try:
        state = plan(configured, last)
        if state.switched > last.switched:
            parameter = rotation_parameter_name(region)
            recorded, unreadable = recorded_rotation(parameter)
            check_switch(state, last, recorded, parameter, unreadable)
        return state
    except RotationOrderError as exc:
        raise InfraConfigError([str(exc)]) from None
