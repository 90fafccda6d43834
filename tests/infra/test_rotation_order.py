"""The AWS rotation order (lifeguard/aws/rotation.py): every config step a login survives, and every other refused."""

from __future__ import annotations

import itertools

import pytest

from lifeguard.aws.rotation import RotationOrderError, check_switch, deployed_state, plan, record
from lifeguard.rotation import RotationState


def walk(steps: list[tuple[int, int]]) -> RotationState:
    """Each (rotation, switched) as one `pulumi up` after the previous one."""
    deployed = RotationState()
    for rotation, switched in steps:
        deployed = plan(RotationState(rotation, switched), deployed)
    return deployed


def test_two_rotations_in_order_alternate_the_roles_and_their_passwords() -> None:
    # up (start 1), migration job, up (switch 1), up (start 2), migration job, up (switch 2)
    states = [RotationState(0, 0), RotationState(1, 0), RotationState(1, 1), RotationState(2, 1), RotationState(2, 2)]
    assert walk([(s.rotation, s.switched) for s in states]) == RotationState(2, 2)
    assert [s.active for s in states] == [0, 0, 1, 1, 0]
    # The keeper of each role's password: only the role DATABASE_URL does not use ever gets a new one.
    assert [(s.generation(0), s.generation(1)) for s in states] == [(0, 0), (0, 1), (0, 1), (2, 1), (2, 1)]
    for before, after in itertools.pairwise(states):
        assert after.generation(before.active) == before.generation(before.active)


@pytest.mark.parametrize(
    ("deployed", "configured", "refusal"),
    [
        (RotationState(0, 0), RotationState(2, 0), "jumps by more than one"),
        (RotationState(1, 0), RotationState(2, 0), "rotation 1 is not switched yet"),
        (RotationState(1, 0), RotationState(2, 1), "rotation 1 is not switched yet"),
        (RotationState(0, 0), RotationState(1, 1), "in the same `pulumi up` that generates"),
        (RotationState(2, 2), RotationState(1, 1), "cannot be undone"),
        (RotationState(1, 1), RotationState(1, 0), "cannot switch back"),
        (RotationState(1, 1), RotationState(1, 2), "is ahead of"),
        (RotationState(0, 0), RotationState(-1, 0), "count rotations from 0"),
    ],
)
def test_an_order_that_would_refuse_logins_is_refused(
    deployed: RotationState, configured: RotationState, refusal: str
) -> None:
    with pytest.raises(RotationOrderError, match=refusal) as info:
        plan(configured, deployed)
    assert "lifeguard:appPassword" in str(info.value)  # it names the key to set


def test_a_stack_without_a_record_counts_as_never_rotated() -> None:
    assert deployed_state(None) == RotationState()
    assert deployed_state({"dbName": "app"}) == RotationState()
    assert deployed_state(record(RotationState(3, 3))) == RotationState(3, 3)
    assert deployed_state({"appPasswordRotation": "x", "appPasswordSwitched": "1"}) == RotationState()


def test_a_switch_needs_the_migration_jobs_record_of_that_rotation() -> None:
    """``check_switch``: moving DATABASE_URL to rotation N needs the record N; anything else is refused."""
    deployed, switch = RotationState(1, 0), RotationState(1, 1)
    check_switch(switch, deployed, 1, "/p")  # recorded: allowed
    check_switch(deployed, deployed, None, "/p")  # no switch: no record needed
    check_switch(RotationState(2, 1), RotationState(1, 1), None, "/p")  # starting a rotation: none either
    for recorded, unreadable, says in ((0, None, "says rotation 0"), (None, None, "holds no rotation"),
                                       (2, None, "says rotation 2"),
                                       (None, "AccessDenied", "could not be read: AccessDenied")):
        with pytest.raises(RotationOrderError, match="the migration job has not recorded") as error:
            check_switch(switch, deployed, recorded, "/p", unreadable)
        assert f"the parameter /p {says}" in str(error.value)
