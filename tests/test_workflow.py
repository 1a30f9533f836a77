"""The GitHub workflow (.github/workflows/quantbench.yml) checked offline: it is valid against the workflow JSON
schema check-jsonschema bundles, and every quantbench, pytest and tox command it runs exists with its flags
(quantbench's own parser, pytest --collect-only, tox.ini's envs). A deliberately broken copy fails both."""

from __future__ import annotations

import configparser
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from quant_impl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "quantbench.yml"
FIXTURE_RUN = ROOT / "tests" / "data" / "benchmarks" / "quick-full" / "0001_quick.json"
NEEDS_CI_EXTRA = "needs the 'ci' extra (pip install -e '.[ci]': check-jsonschema); tox -e py installs it"
TOOLS = ("quantbench", "pytest", "tox")


def _yaml(text: str) -> dict:
    ruamel = pytest.importorskip("ruamel.yaml", reason=NEEDS_CI_EXTRA)
    return ruamel.YAML(typ="safe").load(text)


def schema_errors(path: Path) -> str | None:
    """check-jsonschema's complaint about ``path`` against the bundled GitHub workflow schema, None if valid."""
    pytest.importorskip("check_jsonschema", reason=NEEDS_CI_EXTRA)
    done = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)
    return None if done.returncode == 0 else (done.stdout + done.stderr)


def commands(workflow: dict) -> list[list[str]]:
    """Every quantbench/pytest/tox command of every ``run:`` step, as argv, with ``${{ }}`` expressions replaced by
    a value they can take (the first of a matrix axis) and command substitutions by a fixture run."""
    found = []
    for job in workflow["jobs"].values():
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        for step in job.get("steps", []):
            script = step.get("run")
            if not script:
                continue
            script = re.sub(r"\\\n", " ", script)

            def value(match: re.Match) -> str:
                expression = match.group(1).strip()
                if expression.startswith("matrix."):
                    axis = matrix[expression.split(".", 1)[1]]
                    return str(axis[0] if isinstance(axis, list) else axis)
                return "1" if expression == "github.run_number" else "x"

            script = re.sub(r"\$\{\{(.*?)\}\}", value, script)
            script = re.sub(r"\$\((?:[^()]|\([^()]*\))*\)", str(FIXTURE_RUN), script)
            for line in script.splitlines():
                for part in re.split(r"\|\||&&|[|;]", line):
                    words = shlex.split(part.split(">>")[0].split(" > ")[0])
                    if words and words[0] in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
                        words = ["pytest", *words[3:]]
                    if words and words[0] in TOOLS:
                        found.append(words)
    return found


def command_error(argv: list[str], tmp_path: Path) -> str | None:
    """Why ``argv`` would fail as written (an unknown subcommand, flag or tox env), None if it parses."""
    tool, args = argv[0], argv[1:]
    if tool == "quantbench":
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            return None if exc.code == 0 else f"quantbench {' '.join(args)}: rejected by its argument parser"
        return None
    if tool == "tox":
        ini = configparser.ConfigParser()
        ini.read(ROOT / "tox.ini")
        envs = {s.split(":", 1)[1] for s in ini.sections() if s.startswith("testenv:")} | {"py"}
        wanted = args[args.index("-e") + 1].split(",") if "-e" in args else []
        missing = [env for env in wanted if env not in envs]
        return f"tox: no env {missing} in tox.ini" if missing else None
    done = subprocess.run([sys.executable, "-m", "pytest", *args, "--collect-only", "-q",
                           f"--benchmark-storage=file://{tmp_path / 'storage'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return None if done.returncode == 0 else f"pytest {' '.join(args)}: {(done.stderr or done.stdout)[-800:]}"


def test_the_workflow_is_valid_against_the_github_schema() -> None:
    assert schema_errors(WORKFLOW) is None, schema_errors(WORKFLOW)


def test_every_command_of_the_workflow_exists_with_its_flags(tmp_path: Path) -> None:
    found = commands(_yaml(WORKFLOW.read_text(encoding="utf-8")))
    # The steps the CI section of the README promises: the tests, the bench, the gate, the summaries, the report.
    shown = [" ".join(argv[:2]) for argv in found]
    for expected in ("tox -e", "pytest bench", "quantbench baseline", "quantbench compare", "quantbench report"):
        assert expected in shown, (expected, shown)
    gate = next(argv for argv in found if argv[:2] == ["quantbench", "compare"])
    assert "--fail-on" in gate and "accuracy_drop:0.5" in gate and "markdown" in gate
    errors = [error for argv in found if (error := command_error(argv, tmp_path))]
    assert not errors, errors


@pytest.mark.parametrize(("old", "new", "culprit"), [
    ("    runs-on: ubuntu-latest\n    timeout-minutes: 90\n", "    runs-onn: ubuntu-latest\n    timeout-minutes: 90\n",
     None),  # an unknown key: the schema check
    ("--quant-methods main", "--quant-methodz main", "--quant-methodz"),
    ("quantbench compare --fail-on", "quantbench compare --fail-onn", "--fail-onn"),
    ("\n          tox -e py\n", "\n          tox -e pyy\n", "pyy"),
])
def test_a_broken_workflow_fails_the_checks(tmp_path: Path, old: str, new: str, culprit: str | None) -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "quantbench.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    if culprit is None:
        assert schema_errors(broken) is not None
        return
    errors = [error for argv in commands(_yaml(broken.read_text())) if (error := command_error(argv, tmp_path))]
    assert len(errors) == 1 and culprit in errors[0], errors


@pytest.mark.parametrize("env", ["bench", "bench-full"])
def test_every_command_of_the_main_jobs_exists_with_its_flags(tmp_path: Path, env: str) -> None:
    # tox.ini's main job names its cells itself (its time budget): a renamed method or flag must fail here, not
    # an hour into a user's run.
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    lines = [line.replace("{posargs}", "").strip() for line in ini[f"testenv:{env}"]["commands"].splitlines()]
    found = [words for line in lines if (words := shlex.split(line)) and words[0] in TOOLS]
    assert ["pytest", "bench"] == found[1][:2], found
    errors = [error for argv in found if (error := command_error(argv, tmp_path))]
    assert not errors, errors
