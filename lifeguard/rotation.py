"""Where a password rotation stands: one state for the local stack and the AWS stack alike.

``DATABASE_URL`` logs in as one of two login roles: 0, the application role, and 1, its alternate
(:func:`migrator.contract.alternate_role`). Rotation ``N`` gives role ``N % 2`` a new password, the
one ``DATABASE_URL`` does not use; once Postgres and the pooler hold its verifier, ``DATABASE_URL``
switches to it (docs/roles.md#rotating-the-password). Standard library only: the local stack
(``rotation.json``) and the Pulumi program (``lifeguard.aws.rotation``, its config keys) both keep one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RotationState:
    rotation: int = 0
    """Rotations started: the last one gave role ``rotation % 2`` a new password."""
    switched: int = 0
    """The rotation ``DATABASE_URL`` uses: role ``switched % 2``, with that rotation's password."""

    @property
    def active(self) -> int:
        """The login role ``DATABASE_URL`` uses: 0 the application role, 1 its alternate."""
        return self.switched % 2

    @property
    def pending(self) -> bool:
        """A rotation was started and ``DATABASE_URL`` not switched to it yet."""
        return self.rotation > self.switched

    def generation(self, role: int) -> int:
        """The rotation that last gave ``role`` (0 or 1) its password; 0: the one made with the stack."""
        if self.rotation < 1:
            return 0
        return self.rotation if self.rotation % 2 == role else max(self.rotation - 1, 0)
