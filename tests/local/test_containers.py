"""`lifeguard local up --images` refuses up front what it cannot do (running it: tests/images)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifeguard.stack import containers
from lifeguard.stack.stack import LocalStack
from lifeguard.stack.system import LocalSetupError


def test_up_with_images_without_root_says_so_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(containers, "running_as_root", lambda: False)
    stack = LocalStack(tmp_path / "state")
    with pytest.raises(LocalSetupError, match="needs root"):
        stack.up(images=True)
    assert not (tmp_path / "state").exists()  # no Postgres, no state directory
