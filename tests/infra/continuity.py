"""Existing stacks keep their resources: a snapshot of each variant's URNs and inputs, and the check that a
run of today's program still has every one of them, under its URN or an alias (Pulumi's ``aliases``).

The snapshots in ``tests/infra/snapshots/`` were recorded from the program as deployed before the
components moved into the library (``lifeguard.aws``); those of the existing-database variants
(``existing-aurora``, ``existing-instance``) when the variants were added. They change only on purpose:
``python -m tests.infra.continuity --write [VARIANT ...]`` rewrites them (all, or those named), and the
diff is the review.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.infra.infra_harness import ProgramRun, Resource, is_secret

SNAPSHOTS = Path(__file__).parent / "snapshots"

# Inputs that are digests of what was built (the functions' zips, the images' content tags) or where on
# this machine it was staged (an image's local build context): they change whenever the code in them
# changes, an update in place (a new image, new code) that no refactor of the program can cause or avoid.
BUILD_DIGESTS = frozenset({"sourceCodeHash", "imageName", "imageUri", "build"})


def normalised(value: Any) -> Any:
    """Inputs as JSON: secrets as a marker (never their value), assets by kind, build paths dropped."""
    if is_secret(value):
        return {"<secret>": True}
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [normalised(item) for item in value]
    if isinstance(value, str) and "-----BEGIN " in value:
        # The TLS mocks make real keys, new on each run: a certificate stands for its kind.
        return "<PEM " + value.split("-----BEGIN ", 1)[1].split("-----", 1)[0] + ">"
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return f"<{type(value).__name__}>"


def _inputs(resource: Resource) -> dict[str, Any]:
    raw = {key: item for key, item in resource.inputs.items() if key not in BUILD_DIGESTS}
    if isinstance(raw.get("containerDefinitions"), str):
        # A task definition names its image by digest: keep everything else of each container.
        raw["containerDefinitions"] = [{k: v for k, v in container.items() if k != "image"}
                                       for container in json.loads(raw["containerDefinitions"])]
    inputs: dict[str, Any] = normalised(raw)
    return inputs


def snapshot(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """URN -> the inputs that matter for replacement and update (build digests left out)."""
    return {resource.urn: _inputs(resource) for resource in sorted(run.resources, key=lambda r: r.urn)}


def _make_urn(stack_project: str, parent: str, type_: str, name: str) -> str:
    if parent:
        type_ = parent.split("::")[2].split("$")[-1] + "$" + type_
    return f"{stack_project}::{type_}::{name}"


def known_urns(resource: Resource, by_urn: Mapping[str, Resource], seen: frozenset[str] = frozenset()) -> set[str]:
    """Every URN ``resource`` answers to: its own, its alias specs', and those its parent's aliases give it
    (the engine applies a parent's aliases to each child, as it does on a real ``pulumi up``)."""
    prefix = resource.urn.split("::", 2)
    stack_project = "::".join(prefix[:2])
    urns = {resource.urn}
    parents = {resource.parent}
    if resource.parent and resource.parent in by_urn and resource.parent not in seen:
        parents |= known_urns(by_urn[resource.parent], by_urn, seen | {resource.urn})
    for parent in parents:
        urns.add(_make_urn(stack_project, parent, resource.type, resource.name))
    for alias in resource.aliases:
        if alias.urn:
            urns.add(alias.urn)
            continue
        spec = alias.spec
        for parent in ({""} if spec.noParent else ({spec.parentUrn} if spec.parentUrn else parents)):
            urns.add(_make_urn(stack_project, parent, spec.type or resource.type, spec.name or resource.name))
    return urns


def _kept_ids(recorded: Iterable[str], run: ProgramRun, by_urn: Mapping[str, Resource]) -> dict[str, str]:
    """New mock id -> the id the deployed resource has, for each resource that answers to a recorded URN by an
    alias: the engine keeps an aliased resource (and its id), while the mocks make an id from the resource's
    name (``<name>-id``), so without this every reference to a moved resource would read as changed."""
    old = set(recorded)
    kept: dict[str, str] = {}
    for resource in run.resources:
        if resource.urn in old or resource.id != f"{resource.name}-id":
            continue
        for urn in known_urns(resource, by_urn) & old:
            kept[resource.id] = f"{urn.rsplit('::', 1)[1]}-id"
    return kept


def _with_ids(value: Any, kept: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return kept.get(value, value)
    if isinstance(value, dict):
        return {key: _with_ids(item, kept) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_ids(item, kept) for item in value]
    return value


def differences(recorded: Mapping[str, Mapping[str, Any]], run: ProgramRun) -> list[str]:
    """What an ``up`` of ``run`` over a stack deployed as ``recorded`` would replace or change."""
    by_urn = {resource.urn: resource for resource in run.resources}
    kept = _kept_ids(recorded, run, by_urn)
    now = {urn: _with_ids(inputs, kept) for urn, inputs in snapshot(run).items()}
    answers: dict[str, str] = {}
    for resource in run.resources:
        for urn in known_urns(resource, by_urn):
            answers.setdefault(urn, resource.urn)
    problems = []
    for urn, inputs in recorded.items():
        current = answers.get(urn)
        if current is None:
            problems.append(f"{urn}: gone (no resource has this URN or an alias to it): it would be deleted")
            continue
        changed = sorted(key for key in {*inputs, *now[current]} if inputs.get(key) != now[current].get(key))
        if changed:
            problems.append(f"{urn} (now {current}): inputs changed: {', '.join(changed)}")
    return problems


def added(recorded: Iterable[str], run: ProgramRun) -> list[str]:
    by_urn = {resource.urn: resource for resource in run.resources}
    old = set(recorded)
    return sorted(r.urn for r in run.resources if not known_urns(r, by_urn) & old)


def read(variant: str) -> dict[str, dict[str, Any]]:
    recorded: dict[str, dict[str, Any]] = json.loads((SNAPSHOTS / f"{variant}.json").read_text())
    return recorded


def _write(only: Iterable[str] = ()) -> None:
    from tests.infra.variants import VARIANTS, run_variant

    unknown = set(only) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"no such variant: {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
    SNAPSHOTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as build:
        for variant in VARIANTS:
            if only and variant not in only:
                continue
            text = json.dumps(snapshot(run_variant(variant, Path(build))), indent=1, sort_keys=True)
            assert build not in text, "a build path leaked into the snapshot"
            (SNAPSHOTS / f"{variant}.json").write_text(text + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="record the snapshots from the current program")
    parser.add_argument("variants", nargs="*", help="only these variants (default: all)")
    arguments = parser.parse_args()
    if arguments.write:
        _write(arguments.variants)
