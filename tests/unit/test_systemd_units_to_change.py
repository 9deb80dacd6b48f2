"""Unit tests of the systemd_units_to_change filter, on what `systemctl show` printed on a converged
Debian 13 test host (tests/unit/fixtures/systemctl_show_units.txt) for these units, in this order."""

from pathlib import Path

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.composeops.platform.plugins.filter.systemd_units_to_change import (
    parse_show,
    systemd_units_to_change,
)

SHOWN = (Path(__file__).parent / "fixtures" / "systemctl_show_units.txt").read_text()
# As hardening and common ask for them; the host shows every one settled but the last two.
UNITS = [
    {"name": "apt-daily.timer"},
    {"name": "fail2ban", "package": "fail2ban"},
    # timesyncd skips itself in a container: enabled only.
    {"name": "systemd-timesyncd", "state": ""},
    {"name": "sysstat"},
    {"name": "dailyaidecheck.timer", "enabled": False, "state": "stopped", "missing_ok": True},
    {"name": "nosuch.timer", "enabled": False, "state": "stopped", "missing_ok": True},
    {"name": "composeops-backup-shop-db.timer"},
]


def _names(units):
    return [u["name"] for u in units]


def test_the_recorded_output_has_a_block_per_unit_by_property():
    blocks = parse_show(SHOWN)
    assert len(blocks) == len(UNITS)
    assert blocks[1] == {"Id": "fail2ban.service", "LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled"}
    assert blocks[5]["LoadState"] == "not-found" and blocks[5]["UnitFileState"] == ""


def test_units_in_their_wanted_state_need_no_call():
    assert systemd_units_to_change(UNITS, SHOWN) == []


def test_a_stopped_or_disabled_unit_is_changed():
    # timesyncd is inactive: wanted started, it needs the module; dailyaidecheck is disabled and
    # inactive: wanted enabled, it does too.
    units = [dict(u) for u in UNITS]
    units[2]["state"] = "started"
    units[4] = {"name": "dailyaidecheck.timer"}
    assert _names(systemd_units_to_change(units, SHOWN)) == ["systemd-timesyncd", "dailyaidecheck.timer"]


def test_a_running_unit_wanted_off_is_changed():
    units = [dict(u) for u in UNITS]
    units[0].update(enabled=False, state="stopped")
    assert _names(systemd_units_to_change(units, SHOWN)) == ["apt-daily.timer"]


def test_a_missing_unit_is_left_to_the_module_unless_missing_is_fine():
    units = [dict(u) for u in UNITS]
    units[5] = {"name": "nosuch.timer"}
    assert _names(systemd_units_to_change(units, SHOWN)) == ["nosuch.timer"]


def test_an_output_that_does_not_match_the_units_keeps_them_all():
    assert systemd_units_to_change(UNITS[:3], SHOWN) == UNITS[:3]
    # No read (a skipped task: the roles pass ''): every unit goes to the module.
    assert parse_show("") == []
    assert systemd_units_to_change(UNITS, "") == UNITS
    assert systemd_units_to_change([], "") == []


def test_bad_input_is_refused():
    with pytest.raises(AnsibleFilterError, match="list of mappings with a name"):
        systemd_units_to_change([{"enabled": True}], SHOWN)
