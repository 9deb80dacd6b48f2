#!/usr/bin/env python
"""Find blocks of N or more lines that stand in two places of the YAML under roles/, molecule/,
playbooks/ and inventories/ (the `duplicates` tool reads code, not YAML, where most of an Ansible
collection lives).

Lines are compared with their indentation and surrounding white space folded; blank lines, comments
and lone punctuation (``---``, ``-``) are passed over. Each repeated block is reported once, at its
longest. Left out by design: galaxy metadata (meta/main.yml, the same platforms in every role) and a
role's defaults/main.yml against its meta/argument_specs.yml (the spec must repeat each default:
check_role_specs.py enforces it).

Usage: check_yaml_repeats.py [--min-lines N] [ROOT]   (exit 1 and one line per block when any)
"""

from __future__ import annotations

import sys
from pathlib import Path

DIRS = ("roles", "molecule", "playbooks", "inventories")


def significant_lines(text: str) -> list[tuple[int, str]]:
    """(line number, folded text) of the lines that count."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        folded = " ".join(line.split())
        if not folded or folded.startswith("#") or folded in ("---", "-", "...", "|", ">-"):
            continue
        out.append((number, folded))
    return out


def _by_design(first: str, second: str) -> bool:
    pair = {first.rsplit("/", 2)[0], second.rsplit("/", 2)[0]}
    kinds = {"/".join(first.rsplit("/", 2)[1:]), "/".join(second.rsplit("/", 2)[1:])}
    return len(pair) == 1 and kinds == {"defaults/main.yml", "meta/argument_specs.yml"}


def repeats(files: dict[str, str], min_lines: int) -> list[str]:
    """Report each block of >= min_lines significant lines found in two places."""
    seen: dict[tuple[str, ...], tuple[str, int]] = {}
    lines = {name: significant_lines(text) for name, text in files.items()}
    hits: dict[tuple[str, int, str, int], int] = {}
    for name in sorted(lines):
        rows = lines[name]
        for i in range(len(rows) - min_lines + 1):
            window = tuple(text for _number, text in rows[i:i + min_lines])
            if window in seen:
                other, j = seen[window]
                if (other, j) != (name, i):
                    hits[(other, j, name, i)] = 1
            else:
                seen[window] = (name, i)
    # Fold consecutive windows into one block per pair of places.
    blocks = []
    for other, j, name, i in sorted(hits):
        if (other, j - 1, name, i - 1) in hits or _by_design(other, name):
            continue
        length = min_lines
        while (other, j + length - min_lines + 1, name, i + length - min_lines + 1) in hits:
            length += 1
        first = lines[other][j][0], lines[other][j + length - 1][0]
        second = lines[name][i][0], lines[name][i + length - 1][0]
        blocks.append(f"{other}:{first[0]}-{first[1]} ~ {name}:{second[0]}-{second[1]} ({length} lines)")
    return blocks


def main(argv: list[str]) -> int:
    args = argv[1:]
    min_lines = 6
    if args[:1] == ["--min-lines"]:
        min_lines, args = int(args[1]), args[2:]
    root = Path(args[0] if args else ".")
    files = {}
    for top in DIRS:
        for path in sorted((root / top).rglob("*.yml")):
            if path.is_file() and not path.is_symlink() and not str(path).endswith("meta/main.yml"):
                files[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
    found = repeats(files, min_lines)
    for block in found:
        print(block)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
