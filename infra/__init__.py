"""The sample stack: a Pulumi program that composes ``lifeguard.aws``'s public components, as a user's would."""

from pathlib import Path

SAMPLE_REQUIREMENTS = Path(__file__).with_name("lambda-requirements.txt")
"""The sample functions' pinned wheels (the lock's ``lambda`` group, with hashes), written by scripts/relock."""
