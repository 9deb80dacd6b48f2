"""Unit tests for tests/tools/check_yaml_repeats.py."""

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "check_yaml_repeats", Path(__file__).resolve().parents[1] / "tools" / "check_yaml_repeats.py"
)
check_yaml_repeats = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(check_yaml_repeats)

BLOCK = "".join(f"  key{i}: value{i}\n" for i in range(7))


def test_block_in_two_files_is_reported_once_at_its_length():
    files = {"roles/a/tasks/x.yml": "---\n- name: a\n" + BLOCK, "roles/b/tasks/y.yml": "# other\n" + BLOCK}
    assert check_yaml_repeats.repeats(files, 6) == ["roles/a/tasks/x.yml:3-9 ~ roles/b/tasks/y.yml:2-8 (7 lines)"]


def test_indentation_and_comments_do_not_hide_a_repeat():
    other = "# a comment\n" + "\n".join("    " + line.strip() for line in BLOCK.splitlines()) + "\n"
    assert len(check_yaml_repeats.repeats({"a.yml": BLOCK, "b.yml": other}, 6)) == 1


def test_short_or_different_blocks_pass():
    assert check_yaml_repeats.repeats({"a.yml": BLOCK, "b.yml": BLOCK.replace("value3", "other")}, 6) == []


def test_defaults_against_their_own_argument_spec_are_by_design():
    files = {"roles/a/defaults/main.yml": BLOCK, "roles/a/meta/argument_specs.yml": BLOCK}
    assert check_yaml_repeats.repeats(files, 6) == []
    files = {"roles/a/defaults/main.yml": BLOCK, "roles/b/meta/argument_specs.yml": BLOCK}
    assert len(check_yaml_repeats.repeats(files, 6)) == 1


def test_the_collection_has_no_repeated_block():
    root = Path(__file__).resolve().parents[2]
    assert check_yaml_repeats.main(["check_yaml_repeats.py", str(root)]) == 0
