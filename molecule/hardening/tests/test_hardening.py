"""Every concern of the hardening role, on every hardened host.

Ported from dev-sec linux-baseline (os-*, sysctl-*, package-*) and ssh-baseline (sshd-*) where they
apply to a Docker host; the Docker-specific checks are ours.
"""

import re

import pytest


def sshd_effective(host):
    out = host.check_output("sshd -T -C user=nobody,host=x.invalid,addr=192.0.2.1")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


# --- Admin users -------------------------------------------------------------------------------------
def test_admin_user_has_key_sudo_and_no_expiry(hardened):
    molly = hardened.user("molly")
    assert molly.exists
    assert "sudo" in molly.groups
    keys = hardened.file("/home/molly/.ssh/authorized_keys")
    assert keys.user == "molly" and keys.mode == 0o600
    assert keys.content_string.startswith("ssh-ed25519 ")
    # An expired password makes PAM refuse key logins: managed users never expire.
    assert "Password expires\t\t\t\t\t: never" in hardened.check_output("chage -l molly")
    sudoers = hardened.file("/etc/sudoers.d/composeops-admins")
    assert sudoers.mode == 0o440
    assert "molly ALL=(ALL:ALL) NOPASSWD: ALL" in sudoers.content_string
    assert hardened.run("visudo -c").rc == 0


def test_deploy_user_in_docker_group(hardened, hostvars):
    name = hostvars.get("hardening_deploy_user_name")
    if not name:
        pytest.skip("no deploy user on this host")
    user = hardened.user(name)
    assert "docker" in user.groups and "sudo" not in user.groups
    # Created before docker.io as a system group, so the package's addgroup --system accepted it.
    assert hardened.group("docker").gid < 1000


# --- SSH (ssh-baseline) -----------------------------------------------------------------------------
def test_sshd_effective_settings(hardened, ssh_port):
    cfg = sshd_effective(hardened)
    assert cfg["port"] == str(ssh_port)
    expected = {
        "permitrootlogin": "no",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "pubkeyauthentication": "yes",
        "hostbasedauthentication": "no",
        "ignorerhosts": "yes",
        "x11forwarding": "no",
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "permittunnel": "no",
        "permituserenvironment": "no",
        "gatewayports": "no",
        "compression": "no",
        "usedns": "no",
        "strictmodes": "yes",
        "maxauthtries": "3",
        "logingracetime": "30",
        "clientalivecountmax": "2",
        "maxsessions": "2",
        "loglevel": "VERBOSE",
        "banner": "/etc/issue.net",
        "authenticationmethods": "publickey",
    }
    assert {k: cfg.get(k) for k in expected} == expected
    assert cfg["hostkeyalgorithms"].split(",")[0] == "ssh-ed25519"
    assert all("etm@openssh.com" in mac for mac in cfg["macs"].split(","))
    assert not any("cbc" in c for c in cfg["ciphers"].split(","))
    assert "curve25519-sha256" not in cfg["kexalgorithms"].split(",")


def test_sshd_dropin_sorts_first_and_cloud_init_is_neutralised(hardened):
    dropin = hardened.file("/etc/ssh/sshd_config.d/00-composeops.conf")
    assert dropin.mode == 0o600 and dropin.user == "root"
    assert dropin.content_string.startswith("#")
    files = hardened.check_output("ls /etc/ssh/sshd_config.d/").split()
    assert sorted(files)[0] == "00-composeops.conf"
    cloud = hardened.file("/etc/ssh/sshd_config.d/50-cloud-init.conf").content_string
    assert not re.search(r"^\s*PasswordAuthentication\s+yes", cloud, re.M | re.I)
    assert not re.search(r"^\s*PermitRootLogin\s+yes", cloud, re.M | re.I)
    assert "# composeops.platform.hardening" in cloud
    assert hardened.file("/etc/ssh/sshd_config").mode == 0o600
    assert hardened.run("sshd -t").rc == 0


def test_sshd_runs_and_listens(hardened, ssh_port):
    assert hardened.service("ssh").is_running
    assert hardened.service("ssh").is_enabled
    assert hardened.socket(f"tcp://0.0.0.0:{ssh_port}").is_listening


def test_allow_groups(hardened, hostvars):
    groups = hostvars.get("hardening_ssh_allow_groups", [])
    if not groups:
        pytest.skip("AllowGroups not used here")
    assert sshd_effective(hardened)["allowgroups"] == " ".join(groups)
    for user in ("molly", hostvars["hardening_deploy_user_name"]):
        assert set(groups) <= set(hardened.user(user).groups)


# --- Firewall ---------------------------------------------------------------------------------------
def test_firewall_service_enabled(hardened):
    svc = hardened.service("composeops-firewall")
    assert svc.is_enabled
    assert hardened.check_output("systemctl is-active composeops-firewall") == "active"


def test_firewall_input_default_deny(hardened, ssh_port, hostvars):
    table = hardened.check_output("nft list table inet composeops_filter")
    assert "hook input priority filter; policy drop;" in table
    assert f"tcp dport {ssh_port} ct state new update @ssh_meter4" in table
    allowed = hostvars.get("hardening_firewall_allowed_tcp_ports", [80, 443])
    assert re.search(r"tcp dport (\{ )?%s( \})? accept" % ", ".join(map(str, allowed)), table)
    assert "9999" not in table


def test_docker_user_chain(hardened, hostvars):
    rules = hardened.check_output("iptables -S DOCKER-USER").splitlines()
    allowed = hostvars.get("hardening_firewall_allowed_tcp_ports", [80, 443])
    for port in allowed:
        assert f"-A DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport {port} -j RETURN" in rules
    assert rules[-2:] == ["-A DOCKER-USER -j DROP", "-A DOCKER-USER -j RETURN"]
    assert hardened.run("ip6tables -S DOCKER-USER").rc == 0


def test_firewall_coexists_with_docker(hardened):
    if "docker_host" not in hardened.ansible.get_variables()["group_names"]:
        pytest.skip("Docker is not installed here")
    forward = hardened.check_output("iptables -S FORWARD").splitlines()
    assert forward[1] == "-A FORWARD -j DOCKER-USER", forward
    assert hardened.check_output("iptables -t nat -S DOCKER")


# --- fail2ban ---------------------------------------------------------------------------------------
def test_fail2ban_sshd_jail_bans_with_nftables(hardened, ssh_port):
    assert hardened.service("fail2ban").is_running
    status = hardened.check_output("fail2ban-client status sshd")
    assert "Currently banned" in status
    hardened.check_output("fail2ban-client set sshd banip 192.0.2.66")
    try:
        assert "192.0.2.66" in hardened.check_output("nft list table inet f2b-table")
    finally:
        hardened.run("fail2ban-client set sshd unbanip 192.0.2.66")
    # Our settings are the jail.local override; jail.conf stays the package's.
    jail = hardened.file("/etc/fail2ban/jail.local").content_string
    assert f"port = {ssh_port}" in jail and "banaction = nftables-multiport" in jail
    assert not hardened.file("/etc/fail2ban/jail.d/composeops.local").exists
    with hardened.sudo():
        assert hardened.run("dpkg --verify fail2ban | grep -q jail.conf").rc != 0


def test_fail2ban_extra_jail_hook(hardened, hostvars):
    if not hostvars.get("hardening_fail2ban_jails"):
        pytest.skip("no extra jail here")
    jail = hardened.file("/etc/fail2ban/jail.local").content_string
    assert "[nginx-http-auth]" in jail and "port = http,https" in jail


# --- Unattended upgrades ------------------------------------------------------------------------------
def test_unattended_upgrades(hardened):
    assert hardened.package("unattended-upgrades").is_installed
    periodic = hardened.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic
    origins = hardened.check_output("apt-config dump Unattended-Upgrade::Origins-Pattern")
    assert "label=Debian-Security" in origins
    # Our list replaced the packaged one (security only by default).
    assert "label=Debian\"" not in origins.replace("label=Debian-Security", "")
    assert hardened.service("apt-daily-upgrade.timer").is_enabled
    run = hardened.run("unattended-upgrade --dry-run --debug 2>&1 | head -n 40")
    assert "Allowed origins are:" in run.stdout


# --- Kernel (linux-baseline sysctl-*) ------------------------------------------------------------------
SYSCTL = {
    "net.ipv4.ip_forward": "1",  # Docker host: forwarding stays on
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.all.accept_source_route": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.conf.all.log_martians": "1",
    "net.ipv4.icmp_echo_ignore_broadcasts": "1",
    "net.ipv4.icmp_ignore_bogus_error_responses": "1",
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "kernel.randomize_va_space": "2",
    "kernel.kptr_restrict": "2",
    "kernel.dmesg_restrict": "1",
    "kernel.sysrq": "0",
    "fs.suid_dumpable": "0",
    "fs.protected_hardlinks": "1",
    "fs.protected_symlinks": "1",
}


def test_sysctl_file(hardened):
    conf = hardened.file("/etc/sysctl.d/60-composeops-hardening.conf")
    assert conf.mode == 0o644
    values = dict(
        line.split(" = ", 1) for line in conf.content_string.splitlines() if " = " in line and not line.startswith("#")
    )
    assert {k: values.get(k) for k in SYSCTL} == SYSCTL
    # Never what breaks containers.
    assert "kernel.unprivileged_userns_clone" not in values
    assert hardened.run("sysctl -p --dry-run /etc/sysctl.d/60-composeops-hardening.conf").rc in (0, 1, 255)


def test_module_blacklists_never_touch_overlay(hardened):
    conf = hardened.check_output("cat /etc/modprobe.d/composeops-*.conf")
    for module in ("cramfs", "hfs", "udf", "dccp", "sctp", "rds", "tipc", "usb_storage", "firewire_core"):
        assert f"install {module} /bin/false" in conf and f"blacklist {module}" in conf
    for needed in ("overlay", "br_netfilter", "squashfs", "veth"):
        assert needed not in conf


# --- Accounts and files (linux-baseline os-*) -------------------------------------------------------
def test_login_defs(hardened):
    defs = hardened.file("/etc/login.defs").content_string
    expected = {"UMASK": "027", "PASS_MAX_DAYS": "365", "PASS_MIN_DAYS": "1",
                # Debian 12/13: yescrypt, with its cost factor set (vars/Debian.yml).
                "ENCRYPT_METHOD": "YESCRYPT", "YESCRYPT_COST_FACTOR": "8"}
    for key, value in expected.items():
        assert re.search(rf"^{key}\s+{value}$", defs, re.M), key


def test_password_quality(hardened):
    assert hardened.package("libpam-pwquality").is_installed
    conf = hardened.file("/etc/security/pwquality.conf.d/composeops.conf").content_string
    assert "minlen = 14" in conf and "enforce_for_root" in conf
    assert "pam_pwquality.so" in hardened.file("/etc/pam.d/common-password").content_string


def test_core_dumps_off(hardened):
    assert "* hard core 0" in hardened.file("/etc/security/limits.d/10-composeops-coredump.conf").content_string
    assert "Storage=none" in hardened.file("/etc/systemd/coredump.conf.d/composeops.conf").content_string


@pytest.mark.parametrize(
    "path,owner,group,mode",
    [
        ("/etc/passwd", "root", "root", 0o644),
        ("/etc/shadow", "root", "shadow", 0o640),
        ("/etc/gshadow", "root", "shadow", 0o640),
        ("/etc/group", "root", "root", 0o644),
        ("/root", "root", "root", 0o700),
    ],
)
def test_sensitive_file_permissions(hardened, path, owner, group, mode):
    f = hardened.file(path)
    assert (f.user, f.group, f.mode) == (owner, group, mode)


def test_no_world_writable_files_in_etc(hardened):
    assert hardened.check_output("find /etc -xdev -type f -perm -0002 -print") == ""


@pytest.mark.parametrize("name", ["xinetd", "telnetd", "rsh-server", "nis", "tftpd-hpa", "prelink"])
def test_legacy_services_absent(hardened, name):
    assert not hardened.package(name).is_installed


def test_time_sync(hardened):
    assert hardened.package("systemd-timesyncd").is_installed
    assert hardened.service("systemd-timesyncd").is_enabled


def test_journald_retention(hardened):
    conf = hardened.file("/etc/systemd/journald.conf.d/00-composeops.conf").content_string
    assert "Storage=persistent" in conf and "SystemMaxUse=1G" in conf


# --- auditd -------------------------------------------------------------------------------------------
def test_auditd_rules(hardened):
    assert hardened.package("auditd").is_installed
    rules = hardened.file("/etc/audit/rules.d/50-composeops.rules").content_string
    for watch in ("-w /etc/shadow -p wa -k identity", "-w /etc/sudoers -p wa -k scope", "-w /etc/docker -p rwxa -k docker"):
        assert watch in rules
    # A container has no audit subsystem of its own: the daemon is not started there.
    assert hardened.run("augenrules --check").rc == 0


# --- Banners, protocols, pam_tmpdir, needrestart, debsums, AIDE, acct, remote syslog ---------------------
def test_banners(hardened):
    for path in ("/etc/issue", "/etc/issue.net", "/etc/motd"):
        assert "Authorised access only" in hardened.file(path).content_string


def test_pam_tmpdir(hardened):
    assert hardened.package("libpam-tmpdir").is_installed
    assert "pam_tmpdir.so" in hardened.file("/etc/pam.d/common-session").content_string


def test_needrestart_never_restarts_docker(hardened):
    conf = hardened.file("/etc/needrestart/conf.d/50-composeops.conf").content_string
    assert "$nrconf{restart} = 'a';" in conf
    assert "$nrconf{override_rc}{qr(^docker)} = 0;" in conf
    assert hardened.run("perl -c /etc/needrestart/conf.d/50-composeops.conf").rc == 0


def exposure(host, unit):
    out = host.check_output(f"systemd-analyze security --no-pager {unit} | tail -n 1")
    print(f"{host.backend.host}: {out}")
    return float(re.search(r"level for \S+: (\d+\.\d+)", out).group(1))


def run_unit(host, unit):
    """Start a oneshot unit, wait for it; return its exit status and what it logged."""
    with host.sudo():
        host.run(f"systemctl start {unit}")
        status = int(host.check_output(f"systemctl show -P ExecMainStatus {unit}"))
        log = host.check_output(f"journalctl -q -o cat -u {unit} -n 200 --no-pager")
    return status, log


def test_debsums_scheduled(hardened):
    assert hardened.package("debsums").is_installed
    assert hardened.service("composeops-debsums.timer").is_enabled
    assert hardened.run("systemd-analyze verify --man=no /etc/systemd/system/composeops-debsums.service").rc == 0


def test_debsums_runs_in_its_sandbox(hardened):
    # 0: every file matches; 2: a file changed (the unit fails, as it should). Never a sandbox error.
    status, log = run_unit(hardened, "composeops-debsums.service")
    assert status in (0, 2), log
    assert "Permission denied" not in log and "Operation not permitted" not in log, log
    assert exposure(hardened, "composeops-debsums.service") < 3.0


def test_aide_database_and_timer(hardened):
    assert hardened.file("/var/lib/aide/aide.db").is_file
    assert hardened.service("composeops-aide-check.timer").is_enabled
    excludes = hardened.file("/etc/aide/aide.conf.d/99_composeops_excludes").content_string
    assert "!/var/lib/docker" in excludes and "!/var/lib/composeops" in excludes


def test_aide_uses_sha512_and_runs_in_its_sandbox(hardened):
    # Debian's `Checksums = H` (every hash, MD5 and SHA-1 too) replaced before the groups use it.
    config = hardened.file("/etc/aide/aide.conf").content_string
    assert re.search(r"^Checksums = sha512$", config, re.M) and not re.search(r"^Checksums = H$", config, re.M)
    # 0: no change; 1-7: changes found (the unit fails, as it should); 14+: an error.
    status, log = run_unit(hardened, "composeops-aide-check.service")
    assert status < 14, log
    assert "Permission denied" not in log, log
    assert exposure(hardened, "composeops-aide-check.service") < 3.0


def test_firewall_unit_is_sandboxed(hardened):
    # The rules are in place (test_firewall_*); here: the unit reapplies them inside its sandbox.
    with hardened.sudo():
        hardened.check_output("systemctl restart composeops-firewall.service")
        assert hardened.check_output("systemctl is-active composeops-firewall.service") == "active"
        assert "policy drop" in hardened.check_output("nft list chain inet composeops_filter input")
    assert exposure(hardened, "composeops-firewall.service") < 3.0


def test_process_accounting(hardened):
    assert hardened.package("acct").is_installed
    assert hardened.package("sysstat").is_installed
    assert 'ENABLED="true"' in hardened.file("/etc/default/sysstat").content_string
    assert hardened.service("sysstat").is_enabled
    assert hardened.service("sysstat-collect.timer").is_enabled or \
        hardened.run("systemctl is-active sysstat-collect.timer").stdout.strip() == "active"


def test_patch_visibility_tools(hardened):
    for name in ("apt-listchanges", "apt-show-versions"):
        assert hardened.package(name).is_installed


def test_no_security_update_pending(hardened):
    # The converge applied them (hardening_security_updates_on_converge): nothing from the security
    # archive waits for the nightly run.
    pending = hardened.check_output("apt list --upgradable 2>/dev/null | grep -- '-security' || true")
    assert pending == "", pending
    assert hardened.file("/var/log/unattended-upgrades/unattended-upgrades.log").exists


def test_sudoers_d_and_cron_d_modes(hardened):
    assert hardened.file("/etc/sudoers.d").mode == 0o750
    assert hardened.file("/etc/cron.d").mode == 0o700


def test_cron_d_stays_0700_after_a_package_drops_a_file(hardened):
    """dpkg gives /etc/cron.d the mode the package ships (0755): the apt hook puts 0700 back."""
    build = (
        "set -e; umask 022; d=$(mktemp -d); mkdir -p $d/pkg/DEBIAN $d/pkg/etc/cron.d; chmod 0755 $d/pkg/etc/cron.d; "
        "printf 'Package: composeops-crontest\\nVersion: 1\\nArchitecture: all\\n"
        "Maintainer: test <test@example.invalid>\\nDescription: cron.d test\\n' > $d/pkg/DEBIAN/control; "
        "echo '# test' > $d/pkg/etc/cron.d/composeops-crontest; "
        "dpkg-deb -b --root-owner-group $d/pkg /tmp/composeops-crontest.deb >/dev/null")
    with hardened.sudo():
        hardened.check_output(build)
        try:
            hardened.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/composeops-crontest.deb")
            assert hardened.file("/etc/cron.d/composeops-crontest").exists
            assert hardened.file("/etc/cron.d").mode == 0o700
        finally:
            hardened.run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q composeops-crontest")
    assert hardened.file("/etc/cron.d").mode == 0o700


def test_remote_syslog_reaches_the_log_host(hardened, hostvars):
    if not hostvars.get("hardening_remote_syslog_enabled"):
        pytest.skip("remote syslog not enabled here")
    assert hardened.service("rsyslog").is_running
    marker = "composeops-remote-syslog-test"
    hardened.check_output(f"logger -t hardening {marker}")
    import testinfra

    scanner = testinfra.get_host(
        "ansible://hardening-scanner", ansible_inventory=hardened.backend.ansible_inventory
    )
    got = scanner.run(f"for i in $(seq 20); do grep -q {marker} /var/log/remote.log && exit 0; sleep 1; done; exit 1")
    assert got.rc == 0
