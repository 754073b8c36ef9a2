#!/usr/bin/env python3
"""Resident memory of `pocobelle dns` with N cached names (default 10,000).

Starts a fake upstream on 127.0.0.1 that answers every A question with one
address (TTL 3600), starts `pocobelle dns` against it on a loopback port,
asks N distinct names, asks them all again (cache hits), then prints the
process's VmRSS, VmHWM and Pss and the service's own cache statistics.
Only loopback is used.  Usage: bench/dns-memory.py BINARY [N]
"""
import os, socket, struct, subprocess, sys, tempfile, threading, time, re

binary = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
cache_bytes = int(sys.argv[3]) if len(sys.argv) > 3 else 4 * 1024 * 1024

up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
up.bind(("127.0.0.1", 0))
up_port = up.getsockname()[1]

def upstream():
    while True:
        data, peer = up.recvfrom(4096)
        if len(data) < 12:
            continue
        qid = data[:2]
        # question ends after the name + 4 bytes
        i = 12
        while data[i] != 0:
            i += data[i] + 1
        q = data[12:i + 5]
        hdr = qid + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0)
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 3600, 4) + bytes([192, 0, 2, 1])
        up.sendto(hdr + q + ans, peer)

threading.Thread(target=upstream, daemon=True).start()

d = tempfile.mkdtemp(prefix="pcb-dnsmem-")
os.makedirs(d + "/run"); os.makedirs(d + "/data")
cfg = d + "/c.toml"
open(cfg, "w").write(f"""[system]
run_dir = "{d}/run"
data_dir = "{d}/data"
[dns]
listen = ["127.0.0.1:0"]
upstreams = ["127.0.0.1:{up_port}"]
prime_times = []
rate_limit_qps = 100000
rate_limit_burst = 100000
cache_bytes = {cache_bytes}
""")
p = subprocess.Popen([binary, "dns", "--config", cfg], stderr=subprocess.PIPE, text=True)
port = None
for line in p.stderr:
    m = re.search(r"listening on udp\+tcp 127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1)); break
threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()

def qname(i):
    out = b""
    for label in (f"host{i}", "example", "org"):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"

c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
def ask_all():
    window = 64
    sent = got = 0
    while got < n:
        while sent < n and sent - got < window:
            c.sendto(struct.pack(">HHHHHH", sent & 0xFFFF, 0x0100, 1, 0, 0, 0) + qname(sent) + b"\x00\x01\x00\x01", ("127.0.0.1", port))
            sent += 1
        c.recv(4096); got += 1
t0 = time.time(); ask_all(); t1 = time.time(); ask_all(); t2 = time.time()

def field(path, key):
    for line in open(path):
        if line.startswith(key):
            return line.split()[1] + " kB"
    return "?"
st = f"/proc/{p.pid}/status"
print(f"names: {n}; first pass (misses) {t1-t0:.2f} s, second pass (hits) {t2-t1:.2f} s")
print(f"VmRSS {field(st, 'VmRSS:')}, VmHWM {field(st, 'VmHWM:')}, Pss {field(f'/proc/{p.pid}/smaps_rollup', 'Pss:')}")
stats = subprocess.run([binary, "dns", "stats", "--config", cfg], capture_output=True, text=True).stdout
print(stats.splitlines()[0])
p.terminate(); p.wait()
