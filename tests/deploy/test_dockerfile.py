"""The Dockerfile, parsed: multi-stage, CPU and CUDA variants, non-root, one entry point, health check,
and a build context (.dockerignore) that keeps state and secrets out but everything COPY needs in."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form of CMD/ENTRYPOINT/HEALTHCHECK CMD; shell form is refused."""
        text = self.value
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        if not text.startswith("["):
            raise AssertionError(f"line {self.line}: {self.keyword} must use the exec form, got {text!r}")
        return json.loads(text)

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.value))


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with line continuations joined and comments dropped."""
    instructions, buffer, start = [], "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, value = buffer.partition(" ")
        instructions.append(Instruction(keyword.upper(), value.strip(), start))
        buffer = ""
    return instructions


def stages(instructions: list[Instruction]) -> dict[str, list[Instruction]]:
    """Stage name -> its instructions (FROM first)."""
    result: dict[str, list[Instruction]] = {}
    current = None
    for ins in instructions:
        if ins.keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", ins.value, flags=re.IGNORECASE)
            assert match, f"line {ins.line}: cannot parse FROM {ins.value}"
            current = match.group(2) or f"stage{len(result)}"
            result[current] = []
        if current is not None:
            result[current].append(ins)
    return result


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    return list(stages(instructions).values())[-1]


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    defaults = {}
    for ins in instructions:
        if ins.keyword == "ARG" and "=" in ins.value:
            name, value = ins.value.split("=", 1)
            defaults[name] = value.strip('"')
    return defaults


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile()


def test_variants_are_stages_chosen_by_build_argument(instructions):
    by_name = stages(instructions)
    assert {"os-cpu", "os-cuda", "os", "builder", "runtime"} <= set(by_name)
    assert by_name["os"][0].value.startswith("os-${VARIANT}")
    assert arg_defaults(instructions)["VARIANT"] == "cpu"
    assert "cuda" in arg_defaults(instructions)["CUDA_IMAGE"]
    assert list(by_name)[-1] == "runtime"


def test_torch_is_the_pinned_version_from_the_variant_index(instructions):
    from importlib.metadata import version

    defaults = arg_defaults(instructions)
    # The version this project is developed and tested with (the CPU build here: 2.13.0+cpu).
    assert defaults["TORCH_VERSION"] == version("torch").split("+")[0]
    assert defaults["TORCH_INDEX_CPU"].endswith("/whl/cpu")
    assert re.search(r"/whl/cu\d+$", defaults["TORCH_INDEX_CUDA"])
    runs = " ".join(i.value for i in stages(instructions)["builder"] if i.keyword == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs
    assert 'cpu)  index="$TORCH_INDEX_CPU"' in runs and 'cuda) index="$TORCH_INDEX_CUDA"' in runs
    # The package is installed after torch, from the same environment, with every other version pinned.
    assert runs.index("torch==") < runs.index("pip install -c constraints.txt .")


def test_runtime_is_multi_stage_and_non_root(instructions):
    runtime = final_stage(instructions)
    assert any(i.keyword == "COPY" and i.flags().get("from") == "builder" for i in runtime)
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    uid = arg_defaults(instructions)["UID"]
    assert users[-1].value in ("${UID}:${UID}", uid)
    assert int(uid) >= 1000
    # Nothing after the last USER runs as root again.
    assert runtime.index(users[-1]) > max(runtime.index(i) for i in runtime if i.keyword == "RUN")


def test_entrypoint_cmd_and_healthcheck(instructions):
    runtime = final_stage(instructions)
    entry = next(i for i in runtime if i.keyword == "ENTRYPOINT").exec_form()
    assert entry[-1] == "hftpipe" and entry[:2] == ["tini", "--"]
    assert next(i for i in runtime if i.keyword == "CMD").exec_form() == ["--help"]
    health = next(i for i in runtime if i.keyword == "HEALTHCHECK")
    assert health.exec_form()[0] == "python"
    assert "HEALTHCHECK_URL" in health.value


def test_manifests_run_as_the_image_user(rendered):
    from tests.deploy.conftest import OVERLAYS, pod_specs

    uid = int(arg_defaults(parse_dockerfile())["UID"])
    for overlay in OVERLAYS:
        for res in rendered[overlay]:
            for where, pod in pod_specs(res):
                context = pod.get("securityContext", {})
                assert context.get("runAsNonRoot") is True, f"{overlay} {res['metadata']['name']} {where}"
                images = {c["image"].split(":")[0] for c in pod.get("containers", []) + pod.get("initContainers", [])}
                if images != {"ghcr.io/hftpipe/hftpipe"}:
                    continue  # a third-party image (NATS) runs as its own non-root user
                assert context.get("runAsUser") == uid, f"{overlay} {res['metadata']['name']} {where}"


# ---- build context ---------------------------------------------------------------------------------------

def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(is_exception, pattern) in order, as Docker reads .dockerignore."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        patterns.append((negate, line.lstrip("!").strip("/")))
    return patterns


def is_ignored(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent folder matches too."""
    ignored = False
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for negate, pattern in dockerignore_patterns():
        regex = fnmatch.translate(pattern.replace("**/", "\0")).replace("\0", "(?:.*/)?")
        if any(re.match(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


def copy_sources(instructions: list[Instruction]) -> list[str]:
    sources = []
    for ins in instructions:
        if ins.keyword == "COPY" and "from" not in ins.flags():
            words = [w for w in shlex.split(ins.value) if not w.startswith("--")]
            sources.extend(w.rstrip("/") for w in words[:-1])
    return sources


def test_every_copied_path_exists_and_is_in_the_context(instructions):
    sources = copy_sources(instructions)
    assert {"pyproject.toml", "src", "params.yaml", "expectations", "data/raw"} <= set(sources)
    for source in sources:
        path = REPO / source
        assert path.exists(), f"COPY {source}: no such path in the repository"
        # Build by-products (bytecode, the editable install's egg-info) are not part of the source tree.
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                 and "__pycache__" not in p.parts
                                                 and not any(part.endswith(".egg-info") for part in p.parts)]
        kept = [f for f in files if not is_ignored(f.relative_to(REPO).as_posix())]
        assert kept, f"COPY {source}: everything under it is excluded by .dockerignore"
        if source in ("src", "pyproject.toml", "params.yaml"):
            assert len(kept) == len(files), f"COPY {source}: .dockerignore drops part of it"


@pytest.mark.parametrize("path", [".venv/bin/python", ".hftpipe/mlflow/mlflow.db", ".git/HEAD",
                                  "data/processed/events.parquet", "data/features/features.parquet",
                                  "data/model/model.pt", "mlruns/0/meta.yaml", "src/hftpipe/__pycache__/x.pyc"])
def test_state_and_derived_data_stay_out_of_the_image(path):
    assert is_ignored(path), path


def test_the_shipped_sample_stays_in(instructions):
    assert not is_ignored("data/raw/LOBSTER_SampleFile_GOOG_2012-06-21_10.zip")
    assert not is_ignored("src/hftpipe/cli/__init__.py")
