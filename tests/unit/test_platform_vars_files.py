"""Unit tests of the platform_vars_files filter: which per-platform variable files a role loads."""

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.composeops.platform.plugins.filter.platform_vars_files import platform_vars_files

# The facts of the platforms composeops targets, as `setup` reports them (gather_subset min).
DEBIAN13 = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "13"}
UBUNTU24 = {"os_family": "Debian", "distribution": "Ubuntu", "distribution_major_version": "24"}
ROCKY9 = {"os_family": "RedHat", "distribution": "Rocky", "distribution_major_version": "9"}


def _role(tmp_path, *names):
    (tmp_path / "vars").mkdir()
    for name in names:
        (tmp_path / "vars" / name).write_text("---\n")
    return str(tmp_path)


def _names(paths):
    return [p.rsplit("/", 1)[1] for p in paths]


def test_release_file_is_loaded_after_the_distribution_file(tmp_path):
    role = _role(tmp_path, "Debian.yml", "Debian-13.yml", "Debian-12.yml", "unsupported.yml")
    assert _names(platform_vars_files(role, DEBIAN13)) == ["Debian.yml", "Debian-13.yml"]


def test_ubuntu_layers_on_its_family(tmp_path):
    role = _role(tmp_path, "Debian.yml", "Ubuntu.yml", "Ubuntu-24.yml", "unsupported.yml")
    assert _names(platform_vars_files(role, UBUNTU24)) == ["Debian.yml", "Ubuntu.yml", "Ubuntu-24.yml"]


def test_release_file_alone_makes_a_distribution_known(tmp_path):
    role = _role(tmp_path, "Debian.yml", "Ubuntu-24.yml")
    assert _names(platform_vars_files(role, UBUNTU24)) == ["Debian.yml", "Ubuntu-24.yml"]


def test_family_file_alone_does_not_make_a_distribution_supported(tmp_path):
    role = _role(tmp_path, "Debian.yml", "unsupported.yml")
    assert _names(platform_vars_files(role, UBUNTU24)) == ["unsupported.yml"]


def test_unknown_platform_gets_unsupported_or_nothing(tmp_path):
    role = _role(tmp_path, "Debian.yml", "unsupported.yml")
    assert _names(platform_vars_files(role, ROCKY9)) == ["unsupported.yml"]
    (tmp_path / "vars" / "unsupported.yml").unlink()
    assert platform_vars_files(role, ROCKY9) == []


def test_the_roles_of_the_collection_know_their_targets():
    from pathlib import Path

    roles = Path(__file__).resolve().parents[2] / "roles"
    for role in ("common", "hardening", "docker"):
        for facts in (DEBIAN13, UBUNTU24):
            assert "unsupported.yml" not in _names(platform_vars_files(str(roles / role), facts)), role


def test_missing_facts_are_named():
    with pytest.raises(AnsibleFilterError, match="gather at least the 'min' subset"):
        platform_vars_files("/nonexistent", {"distribution": "Debian"})


def test_all_roles_of_the_collection_in_name_order(tmp_path):
    for role, names in {"web": ["Debian.yml", "Debian-13.yml"], "db": ["Ubuntu.yml", "unsupported.yml"],
                        "plain": []}.items():
        (tmp_path / role).mkdir()
        _role(tmp_path / role, *names)
    (tmp_path / "notes.txt").write_text("not a role\n")
    found = platform_vars_files(str(tmp_path / "web"), DEBIAN13, all_roles=True)
    assert [p.rsplit("/", 3)[1] + "/" + p.rsplit("/", 1)[1] for p in found] == [
        "db/unsupported.yml", "web/Debian.yml", "web/Debian-13.yml"
    ]
