"""constraints.txt: one exact pin per package, covering and satisfying pyproject.toml's requirements."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.conftest import REPO

# Pinned per image variant (CPU / CUDA wheel) by the Dockerfile's TORCH_VERSION and the Makefile.
NOT_PINNED = {"torch"}


def pins() -> dict[str, Version]:
    out: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        key = canonicalize_name(name)
        assert key not in out, f"constraints.txt pins {name} twice"
        out[key] = Version(version)
    return out


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_requirement_is_pinned_to_a_version_it_allows():
    pinned = pins()
    for req in requirements():
        key = canonicalize_name(req.name)
        if key in NOT_PINNED:
            assert key not in pinned, f"{req.name} must not be pinned in constraints.txt"
            continue
        assert key in pinned, f"{req.name} is not pinned in constraints.txt; regenerate it (see its header)"
        assert req.specifier.contains(pinned[key], prereleases=True), (
            f"constraints.txt pins {req.name}=={pinned[key]} but pyproject.toml needs {req.specifier}")


def test_the_project_itself_is_not_pinned():
    assert "hftpipe" not in pins()
