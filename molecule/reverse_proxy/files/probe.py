"""Client side of the reverse_proxy tests, run on the test host against its own loopback.

    probe.py ws HOST PATH MESSAGE          WebSocket handshake over TLS, one echoed text frame
    probe.py reload HOST UPSTREAM_FILE     requests in flight while UPSTREAM_FILE changes and
                                           nginx reloads twice; prints a JSON summary

Every connection goes to 127.0.0.1:443 with HOST as SNI and Host header; the CA bundle of the
host (which trusts the test CAs) verifies the certificate. Every loop is bounded in count and time.
"""

import base64
import http.client
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

CONTEXT = ssl.create_default_context(cafile=os.environ.get("PROBE_CA"))
DEADLINE = time.monotonic() + 90  # no probe runs longer than this


def tls_socket(host):
    raw = socket.create_connection(("127.0.0.1", 443), timeout=20)
    return CONTEXT.wrap_socket(raw, server_hostname=host)


def ws_open(host, path):
    sock = tls_socket(host)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((
        "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status + " ":
        raise RuntimeError("no upgrade: %r" % status)
    return sock


def ws_echo(sock, message):
    data = message.encode()
    mask = os.urandom(4)
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(data)) + mask
                 + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
    head = sock.recv(2)
    payload = b""
    while len(payload) < (head[1] & 0x7F):
        payload += sock.recv((head[1] & 0x7F) - len(payload))
    return payload.decode()


def reload_nginx():
    subprocess.run(["nginx", "-t", "-q"], check=True)
    subprocess.run(["systemctl", "reload", "nginx"], check=True)


def get_root(host, conn):
    """GET / on conn, or on a new connection when it is None: (the connection, the answer)."""
    if conn is None:
        conn = http.client.HTTPSConnection("127.0.0.1", 443, context=CONTEXT, timeout=20)
        conn.sock = tls_socket(host)
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    response.read()
    return conn, response


def load(host, count, results):
    """Sequential GET / on one keepalive connection (a new one when nginx closes it)."""
    conn = None
    for _request in range(count):
        if time.monotonic() > DEADLINE:
            results.append("deadline")
            return
        try:
            conn, response = get_root(host, conn)
            results.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            # A keepalive connection an old worker closed between two requests is not a failed
            # request (clients retry an idempotent request on a fresh connection, so do we once).
            try:
                conn, response = get_root(host, None)
                results.append(response.status)
                results.append("reconnected")
            except (OSError, http.client.HTTPException) as exc2:
                conn = None
                results.append("error: %s / %s" % (exc, exc2))


def slow_request(host, results):
    """One request whose headers arrive over 3 s, across the reload."""
    try:
        sock = tls_socket(host)
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        for line in (b"Host: " + host.encode() + b"\r\n", b"X-Slow: 1\r\n", b"Connection: close\r\n"):
            time.sleep(1)
            sock.sendall(line)
        sock.sendall(b"\r\n")
        answer = b""
        while time.monotonic() < DEADLINE:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        results.append(int(answer.split(b" ", 2)[1]) if answer else "error: empty answer")
    except (OSError, ValueError, IndexError) as exc:
        results.append("error: %s" % exc)


def websocket_across(host, results):
    """A WebSocket opened before the reloads that still echoes after them."""
    try:
        sock = ws_open(host, "/ws")
        first = ws_echo(sock, "before")
        time.sleep(4)
        second = ws_echo(sock, "after")
        results.append(200 if (first, second) == ("before", "after") else "error: %r" % ((first, second),))
    except (OSError, RuntimeError) as exc:
        results.append("error: %s" % exc)


def reload_under_load(host, upstream_file):
    original = open(upstream_file, encoding="utf-8").read()
    servers = [line for line in original.splitlines() if line.strip().startswith("server ")]
    # The change a rollout makes: the same upstream with one replica fewer (then back).
    changed = original.replace(servers[0] + "\n", "") if len(servers) > 1 else original
    load_results, slow_results = [], []
    threads = [threading.Thread(target=load, args=(host, 150, load_results)) for _thread in range(4)]
    threads += [threading.Thread(target=slow_request, args=(host, slow_results)),
                threading.Thread(target=websocket_across, args=(host, slow_results))]
    for thread in threads:
        thread.start()
    time.sleep(1)
    reloads = 0
    for content in (changed, original):
        tmp = upstream_file + ".new"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(content)
        subprocess.run(["composeops-nginx-check", tmp, upstream_file], check=True)
        os.replace(tmp, upstream_file)
        reload_nginx()
        reloads += 1
        time.sleep(1.5)
    for thread in threads:
        thread.join(max(1, DEADLINE - time.monotonic()))
    statuses = [r for r in load_results + slow_results if r != "reconnected"]
    failed = [r for r in statuses if r not in (200, 429)]
    print(json.dumps({"requests": len(statuses), "failed": len(failed), "failures": failed[:10],
                      "ok": statuses.count(200), "rate_limited": statuses.count(429),
                      "reconnects": load_results.count("reconnected"), "reloads": reloads,
                      "slow": slow_results, "removed": servers[0].strip() if len(servers) > 1 else None}))


def main(argv):
    if argv[1] == "ws":
        sock = ws_open(argv[2], argv[3])
        print(ws_echo(sock, argv[4]))
        return 0
    if argv[1] == "reload":
        reload_under_load(argv[2], argv[3])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
