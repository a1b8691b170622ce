"""examples/ci/deployer.yml stays true to the tool: its matrix names profiles that exist, and
every deployer command in it parses with today's CLI."""

from __future__ import annotations

import shlex

import yaml

from deployer.cli import make_parser
from tests.conftest import ROOT

WORKFLOW = ROOT / "examples" / "ci" / "deployer.yml"


def _commands(doc: dict) -> list[list[str]]:
    found = []
    for job in doc["jobs"].values():
        for step in job["steps"]:
            for line in step.get("run", "").replace(">\n", " ").splitlines():
                line = line.replace("${{ matrix.target }}", "web").replace('"$MODEL"', "spec.toml")
                words = shlex.split(line.split("||")[0].split(">")[0], comments=True)
                if words and words[0].endswith("deployer"):
                    found.append(words[1:])
    return found


def test_workflow_matrix_and_commands_match_the_cli():
    doc = yaml.safe_load(WORKFLOW.read_text())
    targets = doc["jobs"]["build"]["strategy"]["matrix"]["target"]
    assert targets and all((ROOT / "targets" / f"{t}.toml").is_file() for t in targets)
    commands = _commands(doc)
    assert {c[0] for c in commands} == {"build", "merge"}
    parser = make_parser()
    for words in commands:
        args = parser.parse_args(words)      # an unknown flag exits here
        assert args.junit
    assert doc["jobs"]["merge"]["needs"] == "build"
