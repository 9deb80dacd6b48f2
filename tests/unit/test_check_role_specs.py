"""Unit tests for tests/tools/check_role_specs.py."""

import importlib.util
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "check_role_specs", Path(__file__).resolve().parents[1] / "tools" / "check_role_specs.py"
)
check_role_specs = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_role_specs)


def _spec(**options):
    return {"argument_specs": {name: {"options": options} for name in ("main", "validate", "converge")}}


def test_matching_role_has_no_problem():
    defaults = {"web_port": 80, "web_names": []}
    spec = _spec(web_port={"type": "int", "default": 80}, web_names={"type": "list"})
    assert check_role_specs.spec_problems("web", defaults, spec) == []


def test_undocumented_default_is_reported():
    problems = check_role_specs.spec_problems("web", {"web_port": 80}, _spec())
    assert problems == ["web: default 'web_port' is missing from argument_specs"]


def test_option_without_default_must_be_required():
    problems = check_role_specs.spec_problems("web", {}, _spec(web_port={"type": "int"}))
    assert problems == ["web: option 'web_port' has no default in defaults/main.yml and is not required"]
    assert check_role_specs.spec_problems("web", {}, _spec(web_port={"required": True})) == []


def test_unprefixed_default_is_reported():
    problems = check_role_specs.spec_problems("web", {"port": 80}, _spec(port={}))
    assert problems == ["web: default 'port' is not prefixed with 'web_'"]


@pytest.mark.parametrize("documented, actual", [(80, 8080), ([], ["a"]), (False, "false")])
def test_diverging_documented_default_is_reported(documented, actual):
    problems = check_role_specs.spec_problems("web", {"web_x": actual}, _spec(web_x={"default": documented}))
    assert len(problems) == 1 and "documents default" in problems[0]


def test_missing_main_entry_point_is_reported():
    assert check_role_specs.spec_problems("web", {}, {"argument_specs": {}}) == [
        "web: meta/argument_specs.yml has no 'main' entry point"
    ]


def test_check_roles_reads_the_tree(tmp_path):
    (tmp_path / "ok" / "defaults").mkdir(parents=True)
    (tmp_path / "ok" / "meta").mkdir()
    (tmp_path / "ok" / "tasks").mkdir()
    for entry_point in ("validate", "converge"):
        (tmp_path / "ok" / "tasks" / f"{entry_point}.yml").write_text("---\n")
    (tmp_path / "ok" / "defaults" / "main.yml").write_text("ok_a: 1\n")
    (tmp_path / "ok" / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main: &spec\n    options:\n      ok_a: {type: int, default: 1}\n  validate: *spec\n"
        "  converge: *spec\n"
    )
    (tmp_path / "nospec").mkdir()
    assert check_role_specs.check_roles(tmp_path) == ["nospec: meta/argument_specs.yml is missing"]


def test_the_collection_roles_pass():
    roles = Path(__file__).resolve().parents[2] / "roles"
    assert check_role_specs.check_roles(roles) == []


@pytest.mark.parametrize("entry_point", ["validate", "converge"])
def test_site_entry_points_are_required_and_match_main(entry_point):
    spec = _spec(web_port={"default": 80})
    del spec["argument_specs"][entry_point]
    assert check_role_specs.spec_problems("web", {"web_port": 80}, spec) == [
        f"web: meta/argument_specs.yml has no '{entry_point}' entry point"
    ]
    spec["argument_specs"][entry_point] = {"options": {}}
    assert check_role_specs.spec_problems("web", {"web_port": 80}, spec) == [
        f"web: the '{entry_point}' entry point must take the options of 'main'"
    ]
