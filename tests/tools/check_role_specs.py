#!/usr/bin/env python
"""Check every role's meta/argument_specs.yml against its defaults/main.yml.

House rules (prometheus.prometheus style), checked for the ``main`` entry point of each role:

* every key of defaults/main.yml is documented in the spec, and every spec option has a default
  there (or is marked ``required``);
* public variables start with the role's name; internals (``_role_*``) never sit in defaults;
* a ``default:`` given in the spec equals the value in defaults/main.yml;
* the ``validate`` entry point (``tasks/validate.yml``, run by site.yml's first play before any role
  changes anything) and the ``converge`` entry point (``tasks/converge.yml``, the role's changes, run
  by site.yml's second play) exist and take exactly the options of ``main``, whose tasks/main.yml
  is the two of them.

Usage: check_role_specs.py ROLES_DIR   (exit 1 and one line per problem when anything is off)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# The entry points every role has besides main, with main's options: site.yml's two plays.
ENTRY_POINTS = ("validate", "converge")


def _load(path: Path) -> dict:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def spec_problems(role: str, defaults: dict, spec: dict) -> list[str]:
    """Return the problems of one role, given its parsed defaults and argument_specs files."""
    problems = []
    entries = spec.get("argument_specs") or {}
    entry = entries.get("main")
    if entry is None:
        return [f"{role}: meta/argument_specs.yml has no 'main' entry point"]
    for name in ENTRY_POINTS:
        other = entries.get(name)
        if other is None:
            problems.append(f"{role}: meta/argument_specs.yml has no '{name}' entry point")
        elif (other.get("options") or {}) != (entry.get("options") or {}):
            problems.append(f"{role}: the '{name}' entry point must take the options of 'main'")
    options = entry.get("options") or {}
    for name in sorted(defaults):
        if not name.startswith(f"{role}_"):
            problems.append(f"{role}: default '{name}' is not prefixed with '{role}_'")
        if name not in options:
            problems.append(f"{role}: default '{name}' is missing from argument_specs")
    for name, option in sorted(options.items()):
        option = option or {}
        if name not in defaults and not option.get("required", False):
            problems.append(f"{role}: option '{name}' has no default in defaults/main.yml and is not required")
        if "default" in option and name in defaults and option["default"] != defaults[name]:
            problems.append(
                f"{role}: option '{name}' documents default {option['default']!r} "
                f"but defaults/main.yml sets {defaults[name]!r}"
            )
    return problems


def check_roles(roles_dir: Path) -> list[str]:
    """Return the problems of every role below roles_dir."""
    problems = []
    for role_dir in sorted(p for p in roles_dir.iterdir() if p.is_dir()):
        spec_file = role_dir / "meta" / "argument_specs.yml"
        if not spec_file.is_file():
            problems.append(f"{role_dir.name}: meta/argument_specs.yml is missing")
            continue
        for name in ENTRY_POINTS:
            if not (role_dir / "tasks" / f"{name}.yml").is_file():
                problems.append(f"{role_dir.name}: tasks/{name}.yml is missing")
        defaults = _load(role_dir / "defaults" / "main.yml")
        problems.extend(spec_problems(role_dir.name, defaults, _load(spec_file)))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    problems = check_roles(Path(argv[1]))
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
