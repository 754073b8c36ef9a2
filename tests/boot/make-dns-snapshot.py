#!/usr/bin/env python3
"""Makes a DNS warm-start snapshot of N cached names with the real service,
for the QEMU boot test's memory measurement on the board.

It owns only this: a fake upstream on 127.0.0.1 (every `nNNNNN.board.test.`
A question gets one address, 198.18.HI.LO with HI.LO = NNNNN, TTL 86400,
so the entries are still fresh when the guest loads them), the host's
`pocobelle dns` on a loopback port against it, N distinct questions (each
answer checked), `pocobelle dns stats` (all N must be cached), then
SIGTERM, on which the service itself writes `<data_dir>/dns.snapshot`;
that file is copied to OUT. OUT.expect tells the guest (tests/boot/check.sh)
how many names to find and a few names to ask, with their addresses. No
snapshot byte is written here, and nothing leaves loopback.

The file is portable to the ARMv7 guest: postcard (varints, little-endian
on both), big-endian header fields, and times stored as each entry's age
at save plus the wall-clock second of the save (the guest adds the time
since then; a guest clock behind the host's counts as no time passed).

Usage: make-dns-snapshot.py BINARY OUT [NAMES]   (NAMES default 20000)
"""
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

# The guest loads the file with the same bound (tests/boot/pocobelle.toml);
# 20,000 A answers take about 1.6 MB of the cache's ring, on any machine.
CACHE_BYTES = 2 * 1024 * 1024  # the default, as in tests/boot/pocobelle.toml
TTL = 86400
WINDOW = 64          # questions in flight
RESEND_AFTER_S = 1.0  # a question unanswered this long is sent again
DEADLINE_S = 120      # the whole fill, even on a slow debug build
MAGIC = b"PCBLDNS\x01"


def die(msg):
    print(f"make-dns-snapshot: {msg}", file=sys.stderr)
    sys.exit(1)


def name_of(i):
    return f"n{i:05d}.board.test."


def addr_of(i):
    return bytes([198, 18, i >> 8, i & 255])


def wire_name(text):
    out = b""
    for label in text.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def fake_upstream(sock):
    """Answers `nNNNNN.board.test.` A with addr_of(NNNNN); REFUSED otherwise."""
    while True:
        try:
            data, peer = sock.recvfrom(4096)
        except OSError:
            return
        if len(data) < 17:
            continue
        i, labels = 12, []
        while i < len(data) and data[i] != 0 and len(labels) < 8:
            labels.append(data[i + 1:i + 1 + data[i]])
            i += data[i] + 1
        end = i + 5
        if end > len(data):
            continue
        question = data[12:end]
        qtype = struct.unpack(">H", data[i + 1:i + 3])[0]
        m = re.fullmatch(rb"n(\d{5})", labels[0].lower()) if labels else None
        ok = (m and [l.lower() for l in labels[1:]] == [b"board", b"test"]
              and qtype == 1 and int(m.group(1)) < 65536)
        if ok:
            hdr = data[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
            ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, TTL, 4) + addr_of(int(m.group(1)))
            sock.sendto(hdr + question + ans, peer)
        else:
            sock.sendto(data[:2] + b"\x81\x85" + struct.pack(">HHHH", 1, 0, 0, 0) + question, peer)


def fill(port, n):
    """Asks the N names, WINDOW at a time; checks every answer's address."""
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(0.2)
    pending, nxt, done, resent = {}, 0, 0, 0
    start = time.monotonic()

    def send(i):
        q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + wire_name(name_of(i)) + b"\x00\x01\x00\x01"
        c.sendto(q, ("127.0.0.1", port))
        pending[i] = time.monotonic()

    while done < n:
        if time.monotonic() - start > DEADLINE_S:
            die(f"only {done} of {n} names answered within {DEADLINE_S} s")
        while nxt < n and len(pending) < WINDOW:
            send(nxt)
            nxt += 1
        try:
            data = c.recv(4096)
        except socket.timeout:
            now = time.monotonic()
            for i, t in list(pending.items()):
                if now - t > RESEND_AFTER_S:
                    send(i)
                    resent += 1
            continue
        qid, flags = struct.unpack(">HH", data[:4])
        if qid not in pending:
            continue  # an answer to a question sent twice
        if flags & 0x000F != 0 or struct.unpack(">H", data[6:8])[0] != 1 or data[-4:] != addr_of(qid):
            die(f"{name_of(qid)}: unexpected answer {data.hex()}")
        del pending[qid]
        done += 1
    return time.monotonic() - start, resent


def main():
    if len(sys.argv) not in (3, 4):
        die("usage: make-dns-snapshot.py BINARY OUT [NAMES]")
    binary, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) == 4 else 20000
    if not 1 <= n <= 65535:
        die("NAMES must be 1..65535 (one DNS ID and one 198.18.x.y address each)")

    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))
    threading.Thread(target=fake_upstream, args=(up,), daemon=True).start()

    d = tempfile.mkdtemp(prefix="pcb-board-snap-")
    try:
        os.makedirs(f"{d}/run")
        os.makedirs(f"{d}/data")
        cfg = f"{d}/dns.toml"
        # hot_names = 0: the guest has no upstream, and priming a hot set
        # there would only hold "primed" back (20 names a second).
        with open(cfg, "w") as f:
            f.write(f"""[system]
run_dir = "{d}/run"
data_dir = "{d}/data"
[log]
level = "info"
[dns]
listen = ["127.0.0.1:0"]
upstreams = ["127.0.0.1:{up.getsockname()[1]}"]
cache_bytes = {CACHE_BYTES}
rate_limit_qps = 1000000
rate_limit_burst = 1000000
snapshot_interval_secs = 86400
prime_times = []
hot_names = 0
""")
        p = subprocess.Popen([binary, "dns", "--config", cfg], stdin=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        log, port = [], None
        for line in p.stderr:
            log.append(line)
            m = re.search(r"listening on udp\+tcp 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            p.kill()
            die("the service did not start:\n" + "".join(log))
        reader = threading.Thread(target=lambda: log.extend(p.stderr), daemon=True)
        reader.start()
        try:
            secs, resent = fill(port, n)
            stats = subprocess.run([binary, "dns", "stats", "--config", cfg],
                                   capture_output=True, text=True, timeout=30).stdout
            m = re.match(r"cache: (\d+) entries", stats)
            if not m or int(m.group(1)) != n:
                die(f"the cache does not hold all {n} names: {stats.splitlines()[:1]}")
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            reader.join(timeout=5)
        written = [l for l in log if "snapshot written" in l]
        if p.returncode != 0 or not any(f"snapshot written: {n} entries" in l for l in written):
            die(f"no snapshot of {n} entries written (exit {p.returncode}):\n" + "".join(log[-10:]))
        snap = f"{d}/data/dns.snapshot"
        with open(snap, "rb") as f:
            head = f.read(28)
        size = os.path.getsize(snap)
        body_len = struct.unpack(">Q", head[12:20])[0] if len(head) == 28 else -1
        if head[:8] != MAGIC or body_len != size - 28:
            die(f"{snap} is not a whole snapshot ({size} bytes)")
        shutil.copyfile(snap, out)
        samples = sorted({0, n * 7 // 19, n * 13 // 20, n - 1})
        with open(out + ".expect", "w") as f:
            f.write("# from tests/boot/make-dns-snapshot.py: names cached, and names to ask\n")
            f.write(f"names {n}\n")
            for i in samples:
                f.write(f"ask {name_of(i).rstrip('.')} {'.'.join(map(str, addr_of(i)))}\n")
        print(f"make-dns-snapshot: {n} names cached by {os.path.basename(binary)} dns in {secs:.1f} s"
              f" ({resent} resent); snapshot {size} bytes -> {out}")
    finally:
        up.close()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
