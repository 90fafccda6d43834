"""An ECR repository and one image built from a folder of this repository, pushed by pulumi-docker.

The tag is a digest of the build context (and the platform), so the repository can keep tags
immutable and an unchanged folder neither rebuilds nor redeploys. Tasks refer to the pushed
image by its repository digest, never by a moving tag.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from infra.config import Architecture

DOCKER_PLATFORMS: dict[Architecture, str] = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
ECS_CPU_ARCHITECTURES: dict[Architecture, str] = {"x86_64": "X86_64", "arm64": "ARM64"}
SHARED_DIR = "shared"
"""Where :func:`build_context` puts shared packages; the Dockerfile copies them to ``/app``."""
_IGNORED_PARTS = frozenset({"__pycache__", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


class ImageContextError(RuntimeError):
    """The build context cannot be used; the message says what is missing."""


def _context_files(context_dir: Path) -> list[tuple[Path, str]]:
    """The files Docker would get from ``context_dir`` (caches left out), with their relative paths."""
    files = []
    for path in sorted(context_dir.rglob("*")):
        relative = path.relative_to(context_dir)
        if not path.is_file() or _IGNORED_PARTS.intersection(relative.parts) or path.suffix == ".pyc":
            continue
        files.append((path, relative.as_posix()))
    return files


def context_tag(context_dir: Path, architecture: Architecture) -> str:
    """A tag that changes exactly when a file (name, content or executable bit) in the context does."""
    if not (context_dir / "Dockerfile").is_file():
        raise ImageContextError(f"{context_dir}/Dockerfile does not exist; the image cannot be built")
    digest = hashlib.sha256(DOCKER_PLATFORMS[architecture].encode())
    for path, relative in _context_files(context_dir):
        executable = path.stat().st_mode & 0o111 != 0
        digest.update(f"\0{relative}\0{int(executable)}\0".encode())
        digest.update(path.read_bytes())
    return f"{architecture}-{digest.hexdigest()[:20]}"


def build_context(context_dir: Path, shared_packages: Sequence[Path], stage_root: Path | None = None) -> Path:
    """The folder Docker builds from: ``context_dir``, plus ``shared/<package>/`` for each shared package.

    A package of the repository that several images (and the function zip) import is kept once in
    the repository and added to a staged copy of the context here, rather than copied into each
    image's folder. Without shared packages the folder itself is the context.
    """
    if not shared_packages:
        return context_dir
    entries = _context_files(context_dir)
    for package in shared_packages:
        entries += [(path, f"{SHARED_DIR}/{package.name}/{relative}") for path, relative in _context_files(package)]
    digest = hashlib.sha256()
    for path, relative in entries:
        digest.update(f"\0{relative}\0{path.stat().st_mode & 0o777}\0".encode())
        digest.update(path.read_bytes())
    root = stage_root or Path(tempfile.gettempdir()) / "lifeguard-build-contexts"
    stage = root / f"{context_dir.name}-{digest.hexdigest()[:20]}"
    if not stage.is_dir():
        partial = stage.with_name(f"{stage.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        for path, relative in entries:
            (partial / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, partial / relative)
        os.replace(partial, stage)
    return stage


@dataclass(frozen=True)
class ContainerImageArgs:
    context_dir: Path
    """The build context; its ``Dockerfile`` is used."""
    architecture: Architecture
    force_delete: bool = False
    """Let ``pulumi destroy`` delete a repository that still holds images (non-production)."""
    keep_images: int = 10
    shared_packages: tuple[Path, ...] = ()
    """Repository packages the image needs besides ``context_dir``: see :func:`build_context`."""


class ContainerImage(pulumi.ComponentResource):
    repository_arn: pulumi.Output[str]
    repository_url: pulumi.Output[str]
    image_uri: pulumi.Output[str]
    """``<repository>@sha256:<digest>`` of the pushed image."""
    tag: str

    def __init__(self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lifeguard:image:ContainerImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        context = build_context(args.context_dir, args.shared_packages)
        self.tag = context_tag(context, args.architecture)

        repository = aws.ecr.Repository(
            f"{name}-repo",
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            force_delete=args.force_delete,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=json.dumps({
                "rules": [{
                    "rulePriority": 1,
                    "description": f"keep the last {args.keep_images} images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                  "countNumber": args.keep_images},
                    "action": {"type": "expire"},
                }]
            }),
            opts=child,
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOptions(parent=self)
        )
        image = docker.Image(
            f"{name}-image",
            image_name=repository.repository_url.apply(lambda url: f"{url}:{self.tag}"),
            build=docker.DockerBuildArgs(
                context=str(context),
                dockerfile=str(context / "Dockerfile"),
                # Explicit, so an image built on an arm64 laptop still runs on x86_64 tasks.
                platform=DOCKER_PLATFORMS[args.architecture],
            ),
            registry=docker.RegistryArgs(
                server=repository.repository_url,
                username=token.user_name,
                password=pulumi.Output.secret(token.password),
            ),
            opts=child,
        )

        self.repository_arn = repository.arn
        self.repository_url = repository.repository_url
        self.image_uri = image.repo_digest
        self.register_outputs({"repositoryUrl": self.repository_url, "imageUri": self.image_uri})
