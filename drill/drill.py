#!/usr/bin/env python3
"""The outage drill, Pocobelle's column (issue 15). Run by drill/run.sh
inside the network namespace it creates (tap0 in bridge br0, the world's
addresses on br0); see drill/README.md.

The world: nsd (authoritative for the test zones) behind dnsrelay.py (the
cold upstream), the laptop's sink (refuses connections until --laptop-after
seconds after mains-on), the senders' MX sink (where a DSN would land),
the DNS probe, and the senders (12 connections from 4 source addresses).
The board: a copy of the qemu-armv7 image with pocobelle.toml edited on
its FAT partition (mtools) and /data/ups.dev put on its data partition
(debugfs), booted in qemu-system-arm -M virt -m 64 on tap0. It is cut
hard (SIGKILL) once --cut-at of the backlog has been acknowledged, then
booted again (a recovery boot).
"""
import argparse
import asyncio
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORLD = "10.77.0.1"
BOARD = "10.77.0.2"
SENDER_ADDRS = ["10.77.0.11", "10.77.0.12", "10.77.0.13", "10.77.0.14"]
LAPTOP = "10.77.0.20"
SENDER_MX = "10.77.0.30"
NSD_PORT = 5300
SENDER_DOMAINS = ["s1.test", "s2.test", "s3.test", "s4.test"]
HOUSE_DOMAIN = "home.test"
# The household's names the probe asks: one local to the board, the rest
# from the world (cold: 3 s at their first lookup; slow1: 12 s; never1: never).
PROBE_NAMES = ["laptop.home.arpa", "www.web.test", "news.web.test", "cdn.web.test",
               "mail.web.test", "slow1.web.test", "never1.web.test"]


def log(msg):
    print(f"drill: {msg}", flush=True)


# --- the world --------------------------------------------------------------

def zones(work):
    """nsd's configuration and zone files; returns the conf path."""
    zd = os.path.join(work, "zones")
    os.makedirs(zd, exist_ok=True)
    soa = "@ 3600 IN SOA ns.world.test. hostmaster.world.test. 1 3600 600 86400 300\n@ 3600 IN NS ns.world.test.\n"
    z = {}
    for i, d in enumerate(SENDER_DOMAINS, 1):
        z[d] = soa + f"@ 300 IN MX 10 mx.{d}.\nmx 300 IN A {SENDER_MX}\nmta{i} 300 IN A {SENDER_ADDRS[i - 1]}\n"
    z[HOUSE_DOMAIN] = soa + (f"@ 300 IN MX 10 laptop.{HOUSE_DOMAIN}.\n@ 300 IN MX 20 board.{HOUSE_DOMAIN}.\n"
                             f"laptop 300 IN A {LAPTOP}\nboard 300 IN A {BOARD}\n")
    z["web.test"] = soa + "".join(f"{n} 300 IN A 10.99.0.{k}\n" for k, n in
                                  enumerate(["www", "news", "cdn", "mail", "slow1", "never1"], 1))
    z["world.test"] = soa + f"ns 300 IN A {WORLD}\n"
    # PTR: senders 1 and 2 have one (forward-confirmed), 3 has none,
    # 4's reverse lookup is never answered (the relay drops it).
    z["0.77.10.in-addr.arpa"] = soa + (
        "11 300 IN PTR mta1.s1.test.\n12 300 IN PTR mta2.s2.test.\n"
        f"2 300 IN PTR board.{HOUSE_DOMAIN}.\n20 300 IN PTR laptop.{HOUSE_DOMAIN}.\n30 300 IN PTR mx.s1.test.\n")
    conf = [
        "server:", f"  ip-address: 127.0.0.1@{NSD_PORT}", "  username: \"\"", f"  zonesdir: \"{zd}\"",
        f"  pidfile: \"{work}/nsd.pid\"", f"  xfrdfile: \"{work}/xfrd.state\"", f"  zonelistfile: \"{work}/zone.list\"",
        "  database: \"\"", "  server-count: 1", "  verbosity: 0", "  hide-version: yes",
        "remote-control:", "  control-enable: no",
    ]
    for name, text in z.items():
        with open(os.path.join(zd, name + ".zone"), "w") as f:
            f.write(f"$ORIGIN {name}.\n$TTL 300\n" + text)
        conf += ["zone:", f"  name: \"{name}\"", f"  zonefile: \"{name}.zone\""]
    path = os.path.join(work, "nsd.conf")
    with open(path, "w") as f:
        f.write("\n".join(conf) + "\n")
    return path


class World:
    def __init__(self, args, work):
        self.args, self.work, self.procs = args, work, {}

    def spawn(self, name, argv):
        out = open(os.path.join(self.work, f"{name}.out"), "w")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def start_dns(self):
        conf = zones(self.work)
        chk = subprocess.run(["nsd-checkconf", conf], capture_output=True, text=True)
        if chk.returncode:
            raise SystemExit(f"drill: nsd-checkconf: {chk.stdout}{chk.stderr}")
        self.spawn("nsd", ["nsd", "-d", "-c", conf])
        py = sys.executable
        self.spawn("dnsrelay", [py, os.path.join(HERE, "world/dnsrelay.py"), "--listen", f"{WORLD}:53",
                                "--upstream", f"127.0.0.1:{NSD_PORT}", "--delay", str(self.args.delay),
                                "--slow", str(self.args.slow),
                                "--slow-re", r"(^|\.)slow[^.]*\.|(^|\.)s3\.test\.$",
                                "--never-re", r"(^|\.)never[^.]*\.|^14\.0\.77\.10\.in-addr\.arpa\.$",
                                "--log", os.path.join(self.work, "dnsrelay.jsonl")])
        self.spawn("sendermx", [py, os.path.join(HERE, "world/sink.py"), "--listen", f"{SENDER_MX}:25",
                                "--log", os.path.join(self.work, "sendermx.jsonl"), "--name", "sendermx"])
        # Both up: nsd answers, the relay answers a warm-up name.
        for _ in range(50):
            r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(NSD_PORT), "@127.0.0.1", "ns.world.test"],
                               capture_output=True, text=True)
            if r.stdout.strip() == WORLD:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("drill: nsd does not answer")

    def start_mains(self, t0):
        py = sys.executable
        self.spawn("laptop", [py, os.path.join(HERE, "world/sink.py"), "--listen", f"{LAPTOP}:25",
                              "--start-at", str(t0 + self.args.laptop_after),
                              "--log", os.path.join(self.work, "laptop.jsonl"), "--name", "laptop"])
        self.spawn("probe", [py, os.path.join(HERE, "world/probe.py"), "--server", f"{BOARD}:53", "--bind", WORLD,
                             "--names", ",".join(PROBE_NAMES), "--log", os.path.join(self.work, "probe.jsonl")])

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def read_jsonl(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


# --- the board --------------------------------------------------------------

def ups_dev(status, charge, runtime):
    return f"ups.mfr: Pocobelle drill\nups.model: dummy\nups.status: {status}\nbattery.charge: {charge}\nbattery.runtime: {runtime}\n"


def prepare_image(args, work):
    img = os.path.join(work, "disk.img")
    subprocess.run(["cp", "--sparse=always", args.image, img], check=True)
    fat = img + "@@4M"
    toml = os.path.join(work, "pocobelle.toml")
    subprocess.run(["mcopy", "-n", "-i", fat, "::pocobelle.toml", toml], check=True)
    text = open(toml).read()
    for old, new in [
        ("dhcp = true", f'dhcp = false\naddress = "{BOARD}/24"\ngateway = "{WORLD}"'),
        ("upstreams = []", f'upstreams = ["{WORLD}:53"]'),
        ("domains = []", f'domains = ["{HOUSE_DOMAIN}"]'),
    ]:
        if old not in text:
            raise SystemExit(f"drill: pocobelle.toml has no line '{old}'")
        text = text.replace(old, new, 1)
    text += f"""
# Added by drill/drill.py: the household's domain goes to the laptop;
# the UPS (dummy-ups playing /data/ups.dev) gates mail at boot.
[mail.routes]
"{HOUSE_DOMAIN}" = "{LAPTOP}:25"

[[dns.hosts]]
name = "laptop"
addrs = ["{LAPTOP}"]

[ups]
mode = "local"
driver = "dummy-ups"
port_path = "/data/ups.dev"
poll_interval_secs = 2
dead_time_secs = 10
start_min_charge = 30
settle_time_secs = {args.settle}
"""
    open(toml, "w").write(text)
    arm = os.path.join(REPO, "out/armv7/pocobelle")
    if os.path.exists(arm) and shutil.which("qemu-arm-static"):
        r = subprocess.run(["qemu-arm-static", "-cpu", "cortex-a7", arm, "check-config", toml], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"drill: check-config: {r.stdout}{r.stderr}")
    subprocess.run(["mcopy", "-o", "-i", fat, toml, "::pocobelle.toml"], check=True)
    data = os.path.join(work, "data.img")
    subprocess.run(["dd", f"if={img}", f"of={data}", "bs=1M", "skip=84", "count=320", "status=none"], check=True)
    dev = os.path.join(work, "ups.dev")
    open(dev, "w").write(ups_dev("OB DISCHRG", 20, 400))
    subprocess.run(["debugfs", "-w", "-R", f"write {dev} ups.dev", data], capture_output=True)
    r = subprocess.run(["debugfs", "-R", "stat /ups.dev", data], capture_output=True, text=True)
    if "Inode:" not in r.stdout:
        raise SystemExit("drill: cannot put ups.dev on the data partition")
    subprocess.run(["dd", f"if={data}", f"of={img}", "bs=1M", "seek=84", "conv=notrunc", "status=none"], check=True)
    os.unlink(data)
    return img


SAMPLER = (
    "( while :; do set -- $(grep -E '^(MemAvailable|SwapTotal|SwapFree):' /proc/meminfo); "
    "echo \"DRILL-MEM avail=$2 swaptotal=$5 swapfree=$8\"; "
    "for c in /sys/fs/cgroup/pocobelle-*; do echo \"DRILL-CG ${c#/sys/fs/cgroup/pocobelle-} $(cat $c/memory.current) "
    "$(cat $c/memory.peak 2>/dev/null || echo 0) $(grep oom_kill $c/memory.events 2>/dev/null | cut -d' ' -f2)\"; done; "
    "for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' <$p/cmdline 2>/dev/null | cut -c1-40); [ -n \"$c\" ] || continue; "
    "echo \"DRILL-P ${p#/proc/} $(grep -E '^Vm(HWM|RSS):' $p/status | tr -s ' \\t\\n' ' ')| $c\"; done; "
    "sleep 3; done ) >/dev/console 2>&1 &"
)


class Board:
    """One QEMU run: console read into a timestamped log, typed into."""

    def __init__(self, args, work, img, n):
        self.n, self.lines, self.lock = n, [], threading.Lock()
        self.logf = open(os.path.join(work, f"boot{n}.log"), "w", buffering=1)
        cmd = ["qemu-system-arm", "-M", "virt", "-cpu", "cortex-a7", "-m", "64",
               "-bios", "/usr/lib/u-boot/qemu_arm/u-boot.bin", "-nographic", "-no-reboot", "-monitor", "none",
               "-serial", "stdio", "-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no",
               "-device", "virtio-net-device,netdev=net0,mac=52:54:00:77:00:02",
               "-drive", f"file={img},if=none,format=raw,id=disk", "-device", "virtio-blk-device,drive=disk"]
        self.t0 = time.time()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self.reader, daemon=True).start()

    def reader(self):
        for raw in self.proc.stdout:
            t = time.time()
            line = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\r", "")
            with self.lock:
                self.lines.append((t, line))
            self.logf.write(f"{t - self.t0:9.3f} {line}\n")

    def find(self, pattern, since=0.0):
        rx = re.compile(pattern)
        with self.lock:
            for t, l in self.lines:
                if t >= since and rx.search(l):
                    return t, l
        return None

    def wait(self, pattern, timeout, since=0.0):
        end = time.time() + timeout
        while time.time() < end:
            hit = self.find(pattern, since)
            if hit:
                return hit
            if self.proc.poll() is not None:
                return None
            time.sleep(0.5)
        return None

    def type(self, line):
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def wait_shell(self, timeout):
        # Nothing is typed before init runs: a key at U-Boot's prompt stops the autoboot.
        end = time.time() + timeout
        if not self.wait(r"supervisor: (mail held|console started|mail started)|mail: listening", timeout):
            return False
        while time.time() < end and self.proc.poll() is None:
            self.type("echo SHELL-R''EADY")
            if self.wait(r"^SHELL-READY", 5):
                return True
        return False

    def cut(self):
        self.proc.kill()  # SIGKILL to QEMU itself (nice exec'd it): the power cut
        self.proc.wait()
        return time.time()


# --- the senders --------------------------------------------------------------

class Senders:
    """12 connections from 4 source addresses; every message retried until a
    2xx, a 5xx is recorded as a rejection (never retried)."""

    def __init__(self, args, work):
        self.args = args
        rnd = random.Random(args.seed)
        lo, hi = 1024, args.max_size
        self.sizes = {f"m{i:04d}": int(lo * (hi / lo) ** rnd.random()) for i in range(args.messages)}
        self.acked = {}        # id -> (time, boot)
        self.rejected = {}     # id -> reply
        self.in_flight_at_cut = set()
        self.dot_sent = set()  # ids whose final dot is out, reply not read yet
        self.deferrals = 0
        self.conn_fail = 0
        self.greetings = []    # times of 220 greetings
        # Each message belongs to one sending MTA (4, one per source address and
        # domain): only that MTA's 3 connections send it, as with real queues.
        self.pending = {m: [i for i in self.sizes if self.mta(i) == m] for m in range(len(SENDER_ADDRS))}
        self.boot = 1
        self.done = threading.Event()
        self.events = open(os.path.join(work, "senders.jsonl"), "w", buffering=1)
        line = b"".join(b"%s\r\n" % (b"%075x" % rnd.getrandbits(300)) for _ in range(args.max_size // 77 + 2))
        self.filler = line

    def body(self, mid, dom):
        head = (f"From: sender <user@{dom}>\r\nTo: <family@{HOUSE_DOMAIN}>\r\nSubject: drill {mid}\r\n"
                f"Message-ID: <{mid}.{self.args.seed}@{dom}>\r\nDate: {datetime.datetime.utcnow():%a, %d %b %Y %H:%M:%S} +0000\r\n"
                f"X-Drill-Id: {mid}\r\n\r\n").encode()
        n = max(0, self.sizes[mid] - len(head))
        cut = self.filler.rfind(b"\r\n", 0, n) + 2 if n > 77 else 0
        return head + self.filler[:cut]

    def note(self, **kw):
        kw["t"] = time.time()
        self.events.write(json.dumps(kw) + "\n")

    async def reply(self, reader, timeout):
        lines = []
        while True:
            l = await asyncio.wait_for(reader.readline(), timeout)
            if not l:
                raise ConnectionError("closed")
            lines.append(l)
            if len(l) < 4 or l[3:4] != b"-":
                return int(l[:3]), b"".join(lines).decode("utf-8", "replace").strip()

    @staticmethod
    def mta(mid):
        return int(mid[1:]) % len(SENDER_ADDRS)

    def take(self, m):
        return self.pending[m].pop(0) if self.pending[m] else None

    def give_back(self, mid, delay):
        asyncio.get_running_loop().call_later(delay, self.pending[self.mta(mid)].append, mid)

    async def worker(self, k):
        m = k % len(SENDER_ADDRS)
        src, dom = SENDER_ADDRS[m], SENDER_DOMAINS[m]
        rnd = random.Random(k)
        while not self.done.is_set():
            if len(self.acked) + len(self.rejected) >= len(self.sizes):
                return
            if not self.pending[m]:
                await asyncio.sleep(0.5)
                continue
            # A message is taken only once the session is up (greeting and EHLO
            # answered), as an MTA's queue hands mail to a ready connection: a
            # connection left hanging by the cut holds no message.
            mid, writer = None, None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(BOARD, 25, local_addr=(src, 0), limit=1 << 16), 30)
                # The tarpit may hold the greeting 120 s; a connection left
                # hanging by the cut waits this long (Postfix: 300 s).
                code, text = await self.reply(reader, self.args.greeting_timeout)
                if code != 220:
                    raise ConnectionError(f"greeting {text}")
                self.greetings.append(time.time())
                writer.write(f"EHLO mta{k % 4 + 1}.{dom}\r\n".encode())
                code, text = await self.reply(reader, 60)
                if code != 250:
                    raise ConnectionError(f"EHLO {text}")
                sent = 0
                mid = self.take(m)
                while mid is not None:
                    data = self.body(mid, dom)
                    writer.write(f"MAIL FROM:<user{k}@{dom}> SIZE={len(data)}\r\n".encode())
                    code, text = await self.reply(reader, 120)
                    if code == 250:
                        writer.write(f"RCPT TO:<family@{HOUSE_DOMAIN}>\r\n".encode())
                        code, text = await self.reply(reader, 120)
                    if code == 250:
                        writer.write(b"DATA\r\n")
                        code, text = await self.reply(reader, 120)
                        if code == 354:
                            writer.write(data + b".\r\n")
                            # A cut board never resets the connection: without a bound the
                            # write would wait for TCP to give up (about 15 minutes).
                            await asyncio.wait_for(writer.drain(), self.args.dot_timeout)
                            self.dot_sent.add(mid)
                            code, text = await self.reply(reader, self.args.dot_timeout)
                            self.dot_sent.discard(mid)
                    if 200 <= code < 300:
                        self.acked.setdefault(mid, (time.time(), self.boot))
                        self.note(ev="ack", id=mid, boot=self.boot, src=src, size=len(data))
                    elif code >= 500:
                        self.rejected[mid] = text
                        self.note(ev="reject", id=mid, reply=text)
                        writer.write(b"RSET\r\n")
                        await self.reply(reader, 60)
                    else:
                        self.deferrals += 1
                        self.note(ev="defer", id=mid, reply=text)
                        self.give_back(mid, self.args.retry * (0.5 + rnd.random()))
                        mid = None
                        break
                    sent += 1
                    mid = self.take(m) if sent < 5 else None
                writer.write(b"QUIT\r\n")
                await asyncio.wait_for(writer.drain(), 30)
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                self.conn_fail += 1
                if mid is not None:
                    if mid in self.dot_sent:
                        self.note(ev="lost-reply", id=mid, err=str(e)[:80])
                        self.dot_sent.discard(mid)
                    self.give_back(mid, self.args.retry * (0.5 + rnd.random()))
                await asyncio.sleep(self.args.retry * (0.5 + rnd.random()))
            finally:
                if writer is not None:
                    writer.close()

    def mark_cut(self):
        self.in_flight_at_cut |= set(self.dot_sent)
        self.note(ev="cut", in_flight=sorted(self.dot_sent))

    def run(self):
        async def main():
            await asyncio.gather(*(self.worker(k) for k in range(self.args.connections)))
        asyncio.run(main())
        self.done.set()


# --- the drill ----------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=300)
    p.add_argument("--max-size", type=int, default=1 << 20)
    p.add_argument("--connections", type=int, default=12)
    p.add_argument("--delay", type=float, default=3.0)
    p.add_argument("--slow", type=float, default=12.0)
    p.add_argument("--laptop-after", type=float, default=300.0)
    p.add_argument("--cut-at", type=float, default=0.4, help="fraction of the backlog acknowledged before the cut")
    p.add_argument("--off-secs", type=float, default=5.0)
    p.add_argument("--settle", type=int, default=30)
    p.add_argument("--retry", type=float, default=5.0)
    p.add_argument("--dot-timeout", type=float, default=120.0,
                   help="seconds a sender waits for its message to be written and for the reply to the final dot "
                   "(Postfix: 180 and 600; a cut board never resets its connections)")
    p.add_argument("--greeting-timeout", type=float, default=180.0,
                   help="seconds a sender waits for the 220 (the tarpit holds it up to 120 s; a connection opened "
                   "just before the cut waits it out)")
    p.add_argument("--deadline", type=float, default=1800.0)
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--image", default=os.path.join(REPO, "out/qemu-armv7/pocobelle-qemu-armv7.img"))
    p.add_argument("--work", default=os.path.join(REPO, "target/drill"))
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--name", default="full")
    p.add_argument("--column", choices=["pocobelle", "postfix"], default="pocobelle",
                   help="postfix: Postfix + BIND9 on the host at the board's address instead of the QEMU board")
    p.add_argument("--budget-mib", type=float, default=33.4,
                   help="postfix column: the cgroup's cap, what the 64 MB guest leaves to user space: MemAvailable "
                   "of the default image at rest (32.8 MiB, 2026-12-05) plus what its dns and mail services hold (0.6 MiB)")
    p.add_argument("--strict", action="store_true", help="exit 1 on any loss, bounce, rejection or OOM kill")
    p.add_argument("--table", nargs="+", metavar="JSON",
                   help="print the results of earlier runs side by side (one column each) and exit")
    args = p.parse_args()
    if args.table:
        print_table([json.load(open(f)) for f in args.table])
        return

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    log(f"{args.name}: {args.messages} messages, {args.connections} connections, laptop on after {args.laptop_after:.0f} s, "
        f"cut at {args.cut_at:.0%} acknowledged; work in {work}")
    if args.column == "pocobelle":
        img = prepare_image(args, work)
        new_board = lambda n: Board(args, work, img, n)
    else:
        import hoststack
        conf = hoststack.prepare(args, work)
        cgroup = hoststack.Cgroup(f"pocobelle-drill-{os.getpid()}", int(args.budget_mib * 1048576),
                                  os.path.join(work, "cgroup"))
        new_board = lambda n: hoststack.HostStack(args, work, conf, n, cgroup)
    world = World(args, work)
    boards, cuts = [], []
    senders = Senders(args, work)
    try:
        world.start_dns()
        # Mains (and the internet) on: the board powers up, the world's caches are cold.
        board = new_board(1)
        t0 = board.t0
        boards.append(board)
        world.start_mains(t0)
        threading.Thread(target=senders.run, daemon=True).start()
        deadline = t0 + args.deadline

        def bring_up(b):
            if args.column != "pocobelle":
                return
            if not b.wait_shell(300):
                log(f"boot {b.n}: no shell on the console")
                return
            # Mains back: the UPS goes from on battery to on line.
            b.type("printf '%s' >/data/ups.dev.new && mv /data/ups.dev.new /data/ups.dev && echo UPS-O''L-SET"
                   % ups_dev("OL CHRG", 20, 500).replace("\n", "\\n"))
            b.wait(r"^UPS-OL-SET", 30)
            b.type(SAMPLER)
            log(f"boot {b.n}: console up at +{time.time() - t0:.0f} s; UPS on line; sampler running")

        bring_up(board)
        cut_after = int(args.cut_at * args.messages)
        while args.cut_at > 0 and len(senders.acked) < cut_after and time.time() < deadline:
            time.sleep(0.2)
        if args.cut_at > 0 and time.time() < deadline:
            tc = board.cut()
            senders.mark_cut()
            cuts.append(tc)
            log(f"power cut at +{tc - t0:.0f} s with {len(senders.acked)} acknowledged, {len(senders.in_flight_at_cut)} in flight")
            time.sleep(args.off_secs)
            senders.boot = 2
            board = new_board(2)
            boards.append(board)
            bring_up(board)
        # Until every message is acknowledged and every acknowledged one is at the laptop.
        while time.time() < deadline:
            got = {r["id"] for r in read_jsonl(os.path.join(work, "laptop.jsonl")) if r.get("id")}
            if len(senders.acked) + len(senders.rejected) >= args.messages and set(senders.acked) <= got:
                break
            time.sleep(2)
        senders.done.set()
        t_end = time.time()
        time.sleep(3)  # a DSN in flight would arrive now
        if args.column != "pocobelle":
            board.final()
            board.stop()
        board.type("echo; echo DRILL-FINAL-BEGIN; pocobelle status; pocobelle mailq | tail -n 3; "
                   "dmesg | grep -iE 'out of memory|oom|killed process' ; "
                   "grep -H . /sys/fs/cgroup/pocobelle-*/memory.events; echo DRILL-FINAL-E''ND")
        if args.column == "pocobelle":
            board.wait(r"^DRILL-FINAL-END", 90)
            board.type("pocobelle poweroff")
            if not board.wait(r"reboot: Power down", 120):
                board.cut()
    finally:
        for b in boards:
            if b.proc.poll() is None or args.column != "pocobelle":
                b.cut()
        world.stop()
        if args.column != "pocobelle":
            cgroup.remove()
    res = analyse(args, work, t0, boards, cuts, senders, t_end)
    print_table(res)
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H%M%SZ")
    out = os.path.join(args.results, f"{stamp}-{args.name}.json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    log(f"results: {out}")
    if args.strict and not res["verdict"]["pass"]:
        log("FAIL: " + "; ".join(res["verdict"]["why"]))
        sys.exit(1)


def analyse(args, work, t0, boards, cuts, senders, t_end):
    laptop = [r for r in read_jsonl(os.path.join(work, "laptop.jsonl")) if r.get("id") or r.get("rcpt")]
    laptop_on = next((r["t"] for r in read_jsonl(os.path.join(work, "laptop.jsonl")) if r.get("event") == "listening"), None)
    dsns = [r for r in read_jsonl(os.path.join(work, "sendermx.jsonl")) if "rcpt" in r]
    dsns += [r for r in laptop if r.get("dsn")]
    received = {}
    for r in laptop:
        if r.get("id"):
            received.setdefault(r["id"], []).append(r["t"])
    acked = senders.acked
    lost = sorted(set(acked) - set(received))
    dups = {i: len(ts) - 1 for i, ts in received.items() if len(ts) > 1}
    dup_cut = {i: n for i, n in dups.items() if i in senders.in_flight_at_cut}
    dup_other = {i: n for i, n in dups.items() if i not in senders.in_flight_at_cut}
    unacked_arrived = sorted(set(received) - set(acked))
    rel = lambda t: None if t is None else round(t - t0, 1)

    # Memory, from the sampler's lines on the consoles.
    min_avail, swap_used_max, cg_peak, proc_hwm, oom_lines, cg_oom = None, 0, {}, {}, [], 0
    boot_info = []
    for b in boards:
        with b.lock:
            lines = list(b.lines)
        for t, l in lines:
            m = re.search(r"DRILL-MEM avail=(-?\d+) swaptotal=(\d+) swapfree=(\d+)", l)
            if m:
                a = int(m.group(1))
                min_avail = a if min_avail is None else min(min_avail, a)
                swap_used_max = max(swap_used_max, int(m.group(2)) - int(m.group(3)))
            m = re.search(r"DRILL-CG (\S+) (\d+) (\d+) ?(\d*)", l)
            if m:
                cg_peak[m.group(1)] = max(cg_peak.get(m.group(1), 0), int(m.group(3)), int(m.group(2)))
                if m.group(4):
                    cg_oom = max(cg_oom, int(m.group(4)))
            m = re.search(r"DRILL-P \d+ VmHWM: (\d+) kB VmRSS: (\d+) kB \| (.*)$", l)
            if m:
                name = m.group(3).strip()
                name = re.sub(r"^/bin/pocobelle ", "pocobelle ", name)
                proc_hwm[name] = max(proc_hwm.get(name, 0), int(m.group(1)))
            if re.search(r"Out of memory|oom-kill|Killed process|invoked oom-killer", l) and "grep" not in l:
                oom_lines.append(l)
        first = lambda pat: next((t for t, l in lines if re.search(pat, l)), None)
        boot_info.append({"boot": b.n, "start": rel(b.t0), "mail_listening": rel(first(r"mail: listening on")),
                          "mail_released": rel(first(r"supervisor: mail released")),
                          "dns_primed": rel(first(r"supervisor: dns is primed")),
                          "recovery": bool(first(r"RECOVERY BOOT")),
                          "spool_recovered": next((l.split("INFO: ")[-1] for t, l in lines if "spool recovered" in l), None)})

    # DNS: the probe. "Cached" = a name's queries after its first NOERROR answer in that boot.
    probe = read_jsonl(os.path.join(work, "probe.jsonl"))
    windows = []
    for i, b in enumerate(boards):
        # A query sent less than its timeout before the cut fails because of the cut.
        end = cuts[i] - 1.0 if i < len(cuts) else t_end
        windows.append((b.n, b.t0, end))
    lat, fails, first_ans, cold = [], 0, {}, {}
    for n, start, end in windows:
        seen = {}
        for r in probe:
            if not (start <= r["t"] < end):
                continue
            if r["name"] not in seen:
                if r["ms"] is not None and r["rcode"] == 0:
                    seen[r["name"]] = r["t"]
                    cold.setdefault(r["name"], []).append(round(r["t"] - start, 1))
                    if n not in first_ans:
                        first_ans[n] = r["t"]
                continue
            if r["ms"] is None or r["rcode"] != 0:
                fails += 1
            else:
                lat.append(r["ms"])
    dns = {"queries_cached": len(lat) + fails, "failures": fails, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
           "max_ms": round(max(lat), 1) if lat else None,
           "first_answer_s_after_boot_start": cold,
           "never_answered": [n for n in PROBE_NAMES if n not in cold]}
    relay = [r for r in read_jsonl(os.path.join(work, "dnsrelay.jsonl")) if "answered" not in r]

    acked_times = sorted(t for t, _ in acked.values())
    all_acked = len(acked) == args.messages
    recv_times = [min(received[i]) for i in acked if i in received]
    delivered_all = all_acked and not lost
    times = {
        "dns_answering": rel(first_ans.get(1)),
        "mail_accepting": rel(min(acked_times)) if acked_times else None,
        "first_greeting": rel(min(senders.greetings)) if senders.greetings else None,
        "backlog_received": rel(max(acked_times)) if all_acked else None,
        "laptop_on": rel(laptop_on),
        "backlog_delivered": rel(max(recv_times)) if delivered_all and recv_times else None,
        "backlog_delivered_after_laptop_on": round(max(recv_times) - laptop_on, 1) if delivered_all and recv_times and laptop_on else None,
        "power_cut": [rel(c) for c in cuts],
    }
    why = []
    if lost:
        why.append(f"{len(lost)} acknowledged message(s) lost")
    if dsns:
        why.append(f"{len(dsns)} DSN(s) (bounces or delay warnings)")
    if senders.rejected:
        why.append(f"{len(senders.rejected)} message(s) rejected with 5xx")
    if oom_lines or cg_oom:
        why.append("OOM kill in the guest" if args.column == "pocobelle" else "OOM kill in the capped cgroup")
    if args.column != "pocobelle" and min_avail is not None and min_avail < 0:
        why.append(f"peak memory {(args.budget_mib * 1024 - min_avail) / 1024:.1f} MiB over the guest's "
                   f"{args.budget_mib} MiB for user space (would be OOM in the board)")
    if not all_acked:
        why.append(f"only {len(acked)} of {args.messages} acknowledged by the deadline")
    if dup_other:
        why.append(f"{len(dup_other)} duplicate(s) not explained by the cut")
    sizes = list(senders.sizes.values())
    return {
        "drill": args.name, "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
        "machine": f"{socket.gethostname()} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})",
        "column": "pocobelle (qemu-armv7 image, -m 64)" if args.column == "pocobelle" else
                  f"postfix + bind9 (host x86-64, cgroup capped at {args.budget_mib} MiB)",
        "params": {k: getattr(args, k) for k in ["messages", "max_size", "connections", "delay", "slow", "laptop_after",
                                                  "cut_at", "settle", "retry", "dot_timeout", "greeting_timeout",
                                                  "seed"]},
        "backlog_bytes": sum(sizes),
        "mail": {"acknowledged": len(acked), "acknowledged_per_boot": {str(b): sum(1 for _, x in acked.values() if x == b) for b in (1, 2)},
                 "rejected_5xx": len(senders.rejected), "deferred_4xx": senders.deferrals,
                 "connection_failures": senders.conn_fail, "delivered_unique": len(set(received) & set(acked)),
                 "lost": lost, "in_flight_at_cut": sorted(senders.in_flight_at_cut),
                 "duplicates_in_flight_at_cut": dup_cut, "duplicates_other": dup_other,
                 "arrived_unacknowledged": unacked_arrived, "dsns": len(dsns)},
        "memory": {"min_mem_available_kib": min_avail, "max_swap_used_kib": swap_used_max,
                   "cgroup_peak_kib": {k: v // 1024 for k, v in sorted(cg_peak.items())},
                   "process_peak_rss_kib": dict(sorted(proc_hwm.items())),
                   "oom_kills": len(oom_lines) + cg_oom, "oom_lines": oom_lines[:10]},
        "dns": dns, "relay_queries": len(relay), "times_s": times, "boots": boot_info,
        "verdict": {"pass": not why, "why": why},
    }


def table_rows(r):
    m, mem, d, t = r["mail"], r["memory"], r["dns"], r["times_s"]
    rows = [
        ("messages acknowledged (250)", f"{m['acknowledged']} of {r['params']['messages']} ({r['backlog_bytes'] / 1048576:.1f} MiB)"),
        ("  per boot (1 / 2)", f"{m['acknowledged_per_boot']['1']} / {m['acknowledged_per_boot']['2']}"),
        ("lost (250'd, not at the laptop)", len(m["lost"])),
        ("bounces (DSNs at senders' MX)", m["dsns"]),
        ("5xx to senders", m["rejected_5xx"]),
        ("4xx deferrals / conn. failures", f"{m['deferred_4xx']} / {m['connection_failures']}"),
        ("in flight at the cut", len(m["in_flight_at_cut"])),
        ("duplicates: in flight / other", f"{sum(m['duplicates_in_flight_at_cut'].values())} / {sum(m['duplicates_other'].values())}"),
        ("OOM kills", mem["oom_kills"]),
        ("min MemAvailable", f"{(mem['min_mem_available_kib'] or 0) / 1024:.1f} MiB"),
        ("max swap used", f"{mem['max_swap_used_kib'] / 1024:.1f} MiB"),
    ]
    for k, v in mem["cgroup_peak_kib"].items():
        label = f"peak PSS: {k[:-4]}" if k.endswith("-pss") else f"peak memory: {k} (cgroup)"
        rows.append((label, f"{v / 1024:.1f} MiB"))
    for k, v in mem["process_peak_rss_kib"].items():
        if re.search(r"pocobelle (dns|mail|ups)|upsd|dummy-ups", k):
            rows.append((f"peak RSS: {k[:28]}", f"{v / 1024:.1f} MiB"))
    rows += [
        ("DNS probe (cached): p50/p99/max", f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']} ms"),
        ("DNS probe: queries / failures", f"{d['queries_cached']} / {d['failures']}"),
        ("mains-on -> DNS answering", f"{t['dns_answering']} s"),
        ("mains-on -> mail accepting (1st 250)", f"{t['mail_accepting']} s"),
        ("power cut at", ", ".join(f"{c} s" for c in t["power_cut"]) or "none"),
        ("mains-on -> backlog received", f"{t['backlog_received']} s"),
        ("laptop on at", f"{t['laptop_on']} s"),
        ("mains-on -> backlog delivered", f"{t['backlog_delivered']} s"),
        ("laptop on -> backlog delivered", f"{t['backlog_delivered_after_laptop_on']} s"),
        ("verdict", "PASS" if r["verdict"]["pass"] else "FAIL: " + "; ".join(r["verdict"]["why"])),
    ]
    return rows


def print_table(results):
    """One column per result (a run's JSON), rows in first-seen order."""
    if isinstance(results, dict):
        results = [results]
    cols = [dict(table_rows(r)) for r in results]
    keys = []
    for r in results:
        keys += [k for k, _ in table_rows(r) if k not in keys]
    w = max(36, *(len(r["column"]) for r in results))
    print()
    for r in results:
        print(f"Outage drill ({r['drill']}), {r['date']}, {r['machine']}")
    print("| " + " " * 40 + " | " + " | ".join(f"{r['column']:{w}}" for r in results) + " |")
    print("| " + "-" * 40 + " | " + " | ".join("-" * w for _ in results) + " |")
    for k in keys:
        print(f"| {k:40} | " + " | ".join(f"{str(c.get(k, '')):{w}}" for c in cols) + " |")
    for r in results:
        for b in r["boots"]:
            print(f"  {r['drill']} boot {b['boot']}: start +{b['start']} s, dns primed +{b['dns_primed']} s, "
                  f"mail released +{b['mail_released']} s, listening +{b['mail_listening']} s"
                  f"{', recovery: ' + str(b['spool_recovered']) if b['recovery'] else ''}")


if __name__ == "__main__":
    main()
