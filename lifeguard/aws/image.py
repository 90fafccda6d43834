"""An ECR repository and one image built from a folder of this repository, pushed by pulumi-docker.

The tag is the full sha256 of the build context and the platform: an unchanged folder keeps its
tag (no rebuild, no redeploy), and two different contexts never share one. Tags are *mutable*:
pulumi-docker pushes again under the same tag whenever its own view of ``build`` changes (another
checkout's file modes, a different working copy), and ECR refuses to overwrite an immutable tag
even with the same digest (aws/containers-roadmap#2179). Nothing depends on a tag staying put:
tasks refer to the pushed image by its repository digest.

Build paths are relative to the program's working directory (Pulumi runs the program in
``infra/``, ``main`` in Pulumi.yaml), so a laptop, CI and a teammate's checkout send pulumi-docker
the same ``build`` inputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from lifeguard.aws.build_context import build_context, context_files, files_digest
from lifeguard.aws.types import Architecture

DOCKER_PLATFORMS: dict[Architecture, str] = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
ECS_CPU_ARCHITECTURES: dict[Architecture, str] = {"x86_64": "X86_64", "arm64": "ARM64"}


class ImageContextError(RuntimeError):
    """The build context cannot be used; the message says what is missing."""


def context_tag(context_dir: Path, architecture: Architecture) -> str:
    """A tag that changes exactly when a file (name, content or executable bit) in the context does."""
    if not (context_dir / "Dockerfile").is_file():
        raise ImageContextError(f"{context_dir}/Dockerfile does not exist; the image cannot be built")
    # The whole digest: a truncated one could, in principle, name two different builds.
    return f"{architecture}-{files_digest(context_files(context_dir), DOCKER_PLATFORMS[architecture].encode())}"


def build_path(path: Path, working_dir: Path | None = None) -> str:
    """``path`` relative to the program's working directory, in POSIX form: the same in every checkout."""
    return Path(os.path.relpath(path.resolve(), (working_dir or Path.cwd()).resolve())).as_posix()


@dataclass(frozen=True)
class ContainerImageArgs:
    context_dir: Path
    """The build context; its ``Dockerfile`` is used."""
    architecture: Architecture
    force_delete: bool = False
    """Let ``pulumi destroy`` delete a repository that still holds images (the stack's deletion protection off)."""
    keep_images: int = 10
    shared_packages: tuple[Path, ...] = ()
    """Repository packages the image needs besides ``context_dir``: see :func:`build_context`."""
    build_args: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Docker ``--build-arg``s (e.g. the base image a user's Dockerfile starts ``FROM``)."""
    tags: Mapping[str, pulumi.Input[str]] | None = None
    """Of the repository (the one taggable resource here)."""


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
            # Mutable: see the module docstring; tasks pin the digest, not the tag.
            image_tag_mutability="MUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "AES256"}],
            force_delete=args.force_delete,
            tags=args.tags,
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
                context=build_path(context),
                dockerfile=build_path(context / "Dockerfile"),
                # Explicit, so an image built on an arm64 laptop still runs on x86_64 tasks.
                platform=DOCKER_PLATFORMS[args.architecture],
                args=dict(args.build_args) or None,
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
