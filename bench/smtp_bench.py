#!/usr/bin/env python3
"""SMTP relay benchmark: pocobelle mail vs a private Postfix instance, side
by side in one run on one machine.

Both systems get the same load: Postfix's smtp-source sends MESSAGES
messages of SIZE bytes over SESSIONS sessions, and both relay them to
smtp-sink on 127.0.0.1. The relays (and every process they spawn) run on
SERVER_CPU; smtp-source, smtp-sink and this script run on LOAD_CPU.

Each system gets two passes on a fresh spool/queue:
  1. throughput (no tracing): accepted/s = MESSAGES / time until
     smtp-source exits (every message got its 250); delivered/s =
     MESSAGES / time until smtp-sink counted MESSAGES messages. During
     this pass the summed PSS of the relay's process tree (the root
     process and all its descendants, /proc/PID/smaps_rollup) is sampled
     every SAMPLE_MS ms; the peak sum and the most processes seen are
     reported.
  2. syscalls (under `strace -f`, not timed): fsync + fdatasync calls
     per message (sync_file_range, sync and syncfs are counted too and
     shown apart), and the mean size of write calls whose file descriptor
     points into the spool (pocobelle: <data_dir>/spool, Postfix: its
     queue_directory), from `strace -y`.

Postfix is a PRIVATE instance: its own config directory (`master -c`), a
master.cf and main.cf written here, queue_directory and data_directory
under the temp dir, no chroot, smtpd on a high loopback port, relayhost =
the sink. It never reads or touches /etc/postfix and leaves nothing
running. Postfix defaults otherwise (including in_flow_delay).

Usage: smtp_bench.py POCOBELLE_BINARY OUTDIR
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

MESSAGES = int(os.environ.get("BENCH_MESSAGES", "2000"))
SIZE = int(os.environ.get("BENCH_SIZE", "4096"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "4"))
SAMPLE_MS = int(os.environ.get("BENCH_SAMPLE_MS", "25"))
SERVER_CPU = "1"
LOAD_CPU = 0
DEADLINE_S = 600
PF_DAEMONS = "/usr/lib/postfix/sbin"
SYNC_CALLS = ["fsync", "fdatasync", "sync_file_range", "sync", "syncfs"]
WRITE_CALLS = ["write", "writev", "pwrite64", "pwritev", "pwritev2"]


def perf_works():
    """True when `perf stat` can count syscall tracepoints here."""
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-x,", "-e", "syscalls:sys_enter_fsync", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "syscalls:sys_enter_fsync" in r.stderr


PERF = perf_works()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before listening: {getattr(proc, 'note', '')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{what} did not listen on {port} within {timeout} s")


def stop(proc, timeout=20):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_root(root, wrapper):
    """Stops the server itself (a wrapper such as strace may leave it
    running when it is the one signalled), then the wrapper."""
    if root is not None and root != wrapper.pid:
        try:
            os.kill(root, signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.monotonic() + 20
        while ppid(root) is not None and time.monotonic() < end:
            time.sleep(0.05)
        if ppid(root) is not None:
            os.kill(root, signal.SIGKILL)
        try:
            wrapper.wait(20)  # perf writes its counts as it exits
        except subprocess.TimeoutExpired:
            pass
    stop(wrapper)


# --- memory: summed PSS over a process tree ---------------------------------

def tree(root):
    """The pids of `root` and all its descendants."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parent[int(d)] = ppid
    kids = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, root):
        super().__init__(daemon=True)
        self.root = root
        self.peak_kb = 0
        self.peak_procs = 0
        self.samples = 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            pids = tree(self.root)
            total = sum(pss_kb(p) for p in pids)
            self.samples += 1
            self.peak_kb = max(self.peak_kb, total)
            self.peak_procs = max(self.peak_procs, len(pids))
            self.done.wait(SAMPLE_MS / 1000)


# --- the load and the sink --------------------------------------------------

class Sink:
    """smtp-sink with its running counter (-c) written to a file."""

    def __init__(self, d):
        self.port = free_port()
        self.out = os.path.join(d, "sink.out")
        self.proc = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "256"],
            stdout=open(self.out, "wb"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "smtp-sink")

    def count(self):
        with open(self.out, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 80))
            tail = f.read().decode(errors="replace")
        m = re.findall(r"mesg=(\d+)", tail)
        return int(m[-1]) if m else 0

    def close(self):
        stop(self.proc)


def load(port):
    return subprocess.run(
        ["smtp-source", "-s", str(SESSIONS), "-m", str(MESSAGES), "-l", str(SIZE),
         "-M", "client.test", "-f", "bench@client.test", "-t", "user@dest.test",
         f"127.0.0.1:{port}"],
        capture_output=True, text=True)


# --- the two systems --------------------------------------------------------

class Pocobelle:
    name = "pocobelle"

    def __init__(self, binary, d, sink_port):
        self.binary = binary
        self.port = free_port()
        self.spool = os.path.join(d, "data", "spool")
        os.makedirs(os.path.join(d, "run"))
        # DNS is "primed": no slow start (the inbound limit is 4 at once).
        open(os.path.join(d, "run", "dns.primed"), "w").close()
        self.config = os.path.join(d, "pocobelle.toml")
        with open(self.config, "w") as f:
            f.write(f"""[system]
hostname = "bench.test"
data_dir = "{d}/data"
run_dir = "{d}/run"

[mail]
listen = ["127.0.0.1:{self.port}"]
relay_networks = ["127.0.0.0/8"]
min_free_bytes = 0
smarthost = "127.0.0.1:{sink_port}"
""")
        self.log = os.path.join(d, "mail.log")

    def command(self):
        return [self.binary, "mail", "--config", self.config]


class Postfix:
    name = "postfix"

    def __init__(self, d, sink_port):
        self.port = free_port()
        self.conf = os.path.join(d, "etc")
        self.spool = os.path.join(d, "queue")
        data = os.path.join(d, "data")
        self.log = os.path.join(d, "maillog")
        os.makedirs(self.conf)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(f"""# Private benchmark instance (bench/smtp_bench.py); nothing system-wide.
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {data}
meta_directory = {self.conf}
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
local_transport = error:local delivery is disabled
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:{sink_port}
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
maillog_file_prefixes = {d}
maillog_file = {self.log}
""")
        # Debian's default services, without chroot, smtpd on our port.
        services = f"""127.0.0.1:{self.port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(services)
        # The layout `postfix set-permissions` would make.
        os.makedirs(self.spool)
        os.makedirs(data)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        for sub, user, group, mode in [
            ("active", "postfix", None, 0o700), ("bounce", "postfix", None, 0o700),
            ("corrupt", "postfix", None, 0o700), ("defer", "postfix", None, 0o700),
            ("deferred", "postfix", None, 0o700), ("flush", "postfix", None, 0o700),
            ("hold", "postfix", None, 0o700), ("incoming", "postfix", None, 0o700),
            ("private", "postfix", None, 0o700), ("saved", "postfix", None, 0o700),
            ("trace", "postfix", None, 0o700), ("maildrop", "postfix", "postdrop", 0o730),
            ("public", "postfix", "postdrop", 0o710), ("pid", "root", None, 0o755),
        ]:
            p = os.path.join(self.spool, sub)
            os.makedirs(p)
            shutil.chown(p, user, group)
            os.chmod(p, mode)

    def command(self):
        return [os.path.join(PF_DAEMONS, "master"), "-c", self.conf, "-d"]


# --- one pass ---------------------------------------------------------------

def run_pass(system_factory, binary, traced):
    d = tempfile.mkdtemp(prefix="pocobelle-smtpbench-")
    os.chmod(d, 0o755)  # Postfix's daemons run as user postfix
    sink = server = None
    root = None
    try:
        sink = Sink(d)
        sysm = system_factory(binary, d, sink.port)
        cmd = ["taskset", "-c", SERVER_CPU] + sysm.command()
        trace = os.path.join(d, "strace.out")
        counts = os.path.join(d, "perf.out")
        if traced:
            cmd = ["strace", "-f", "-qq", "-y", "-s", "0", "-o", trace,
                   "-e", "trace=" + ",".join(SYNC_CALLS + WRITE_CALLS)] + cmd
        elif PERF:
            # Counting tracepoints (no tracing) over the server and every
            # process it forks.
            cmd = ["perf", "stat", "-x,", "-o", counts, "-e",
                   ",".join(f"syscalls:sys_enter_{c}" for c in ("fsync", "fdatasync"))] + cmd
        logf = open(os.path.join(d, "server.stderr"), "wb")
        server = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
        server.note = f"see {d}/server.stderr"
        wait_port(sysm.port, server, sysm.name)
        time.sleep(0.5)  # let it settle (Postfix spawns qmgr, pickup)
        # taskset execs the server: its pid is the tree's root, or the
        # wrapper's (perf, strace) child.
        root = server.pid
        if cmd[0] != "taskset":
            root = next(p for p in tree(server.pid) if p != server.pid and ppid(p) == server.pid)
        sampler = Sampler(root)
        sampler.start()
        t0 = time.monotonic()
        r = load(sysm.port)
        t_accept = time.monotonic() - t0
        if r.returncode != 0:
            raise SystemExit(f"smtp-source into {sysm.name} failed: {r.stdout}{r.stderr}")
        while sink.count() < MESSAGES:
            if time.monotonic() - t0 > DEADLINE_S:
                raise SystemExit(
                    f"{sysm.name}: only {sink.count()} of {MESSAGES} delivered "
                    f"in {DEADLINE_S} s; see {d}")
            if server.poll() is not None:
                raise SystemExit(f"{sysm.name} exited early; see {d}")
            time.sleep(0.005)
        t_deliver = time.monotonic() - t0
        # Outcomes of the last deliveries are committed within a second.
        time.sleep(1.0)
        sampler.done.set()
        sampler.join()
        delivered = sink.count()
        stop_root(root, server)
        server = None
        res = {
            "accept_s": t_accept, "deliver_s": t_deliver, "delivered": delivered,
            "pss_kb": sampler.peak_kb, "procs": sampler.peak_procs,
            "samples": sampler.samples,
        }
        if traced:
            res.update(parse_trace(trace, sysm.spool))
        elif PERF:
            res["perf_syncs"] = parse_perf(counts)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(d, ignore_errors=True)
        return res
    finally:
        if server is not None:
            stop_root(root, server)
        if sink:
            sink.close()


# `PID call(fd</path>, ...) = N`, or split in two when another process
# interleaves: `PID call(fd</path>, ... <unfinished ...>` and later
# `PID <... call resumed>...) = N`.
START = re.compile(r"^(\d+)\s+(\w+)\(\d+(<[^>]*>)?")
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>")
RESULT = re.compile(r"\)\s+=\s+(-?\d+)")


def parse_trace(path, spool):
    syncs = {c: 0 for c in SYNC_CALLS}
    wcalls = wbytes = 0
    spool = os.path.realpath(spool)
    pending = {}

    def done(call, fdpath, ret):
        nonlocal wcalls, wbytes
        if call in WRITE_CALLS and fdpath[1:].startswith(spool) and ret > 0:
            wcalls += 1
            wbytes += ret

    with open(path, errors="replace") as f:
        for line in f:
            m = START.match(line)
            if m:
                pid, call, fdpath = m.group(1), m.group(2), m.group(3) or ""
                if call in syncs:
                    syncs[call] += 1
                if line.rstrip().endswith("<unfinished ...>"):
                    pending[pid] = (call, fdpath)
                    continue
                r = RESULT.search(line)
                if r:
                    done(call, fdpath, int(r.group(1)))
                continue
            m = RESUMED.match(line)
            if m and m.group(1) in pending:
                call, fdpath = pending.pop(m.group(1))
                r = RESULT.search(line)
                if r:
                    done(call, fdpath, int(r.group(1)))
    return {"syncs": syncs, "spool_writes": wcalls, "spool_bytes": wbytes}


def parse_perf(path):
    """fsync + fdatasync calls counted by `perf stat -x,`."""
    total = 0
    with open(path) as f:
        for line in f:
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith("syscalls:") and fields[0].isdigit():
                total += int(fields[0])
    return total


# --- report -----------------------------------------------------------------

def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    binary, outdir = os.path.abspath(sys.argv[1]), sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    os.sched_setaffinity(0, {LOAD_CPU})
    for tool in ["smtp-source", "smtp-sink", "strace", "taskset"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run `bash scripts/setup.sh bench`")
    systems = {
        "pocobelle": lambda b, d, p: Pocobelle(b, d, p),
        "postfix": lambda b, d, p: Postfix(d, p),
    }
    results = {}
    for name, factory in systems.items():
        print(f"{name}: throughput pass ...", flush=True)
        res = run_pass(factory, binary, traced=False)
        print(f"{name}: strace pass ...", flush=True)
        tr = run_pass(factory, binary, traced=True)
        res.update({k: tr[k] for k in ["syncs", "spool_writes", "spool_bytes"]})
        res["traced_delivered"] = tr["delivered"]
        results[name] = res

    rows = []

    def row(label, fmt, key):
        rows.append((label, *(fmt(results[n]) for n in systems), key(results)))

    def ratio(a, b):
        return f"{a / b:.2f}x" if b else "-"

    pb, pf = results["pocobelle"], results["postfix"]
    for r in results.values():
        r["acc"] = MESSAGES / r["accept_s"]
        r["del"] = MESSAGES / r["deliver_s"]
        r["fs"] = (r["syncs"]["fsync"] + r["syncs"]["fdatasync"]) / MESSAGES
        r["other_sync"] = sum(v for k, v in r["syncs"].items()
                              if k not in ("fsync", "fdatasync"))
        r["wsize"] = r["spool_bytes"] / r["spool_writes"] if r["spool_writes"] else 0
    row("accepted msg/s", lambda r: f"{r['acc']:.0f}", lambda _: ratio(pb["acc"], pf["acc"]))
    row("delivered msg/s (all at sink)", lambda r: f"{r['del']:.0f}",
        lambda _: ratio(pb["del"], pf["del"]))
    if PERF:
        for r in results.values():
            r["fs_perf"] = r["perf_syncs"] / MESSAGES
        row("fsync+fdatasync/msg (perf stat)", lambda r: f"{r['fs_perf']:.3f}",
            lambda _: ratio(pb["fs_perf"], pf["fs_perf"]))
    row("fsync+fdatasync/msg (strace pass)", lambda r: f"{r['fs']:.3f}",
        lambda _: ratio(pb["fs"], pf["fs"]))
    row("  (fsync / fdatasync / other syncs)",
        lambda r: f"{r['syncs']['fsync']}/{r['syncs']['fdatasync']}/{r['other_sync']}",
        lambda _: "")
    row("spool writes (calls, bytes)",
        lambda r: f"{r['spool_writes']}, {r['spool_bytes']}", lambda _: "")
    row("mean spool write, bytes", lambda r: f"{r['wsize']:.0f}",
        lambda _: ratio(pb["wsize"], pf["wsize"]))
    row("peak summed PSS, MB", lambda r: f"{r['pss_kb'] / 1024:.1f}",
        lambda _: "1/" + ratio(pf["pss_kb"], pb["pss_kb"]))
    row("processes (most seen)", lambda r: f"{r['procs']}", lambda _: "")

    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"SMTP relay benchmark, {stamp}, {os.uname().machine}, {os.cpu_count()} CPUs; "
        f"{MESSAGES} x {SIZE} B over {SESSIONS} sessions (smtp-source -> relay -> smtp-sink); "
        f"relays on CPU {SERVER_CPU}, load on CPU {LOAD_CPU}",
        f"{'':36}{'pocobelle':>14}{'postfix':>18}{'ratio':>10}",
    ]
    for label, a, b, c in rows:
        lines.append(f"{label:36}{a:>14}{b:>18}{c:>10}")
    targets = [
        ("throughput >= 1.5x Postfix (delivered)", pb["del"] >= 1.5 * pf["del"]),
        ("throughput >= 1.5x Postfix (accepted)", pb["acc"] >= 1.5 * pf["acc"]),
        ("fsyncs per message <= 0.5 (both counts)",
         pb["fs"] <= 0.5 and pb.get("fs_perf", 0) <= 0.5),
        ("peak summed PSS <= 1/8 of Postfix's", pb["pss_kb"] * 8 <= pf["pss_kb"]),
    ]
    lines.append("targets:")
    for t, ok in targets:
        lines.append(f"  {'met    ' if ok else 'NOT met'}  {t}")
    lines.append(
        f"PSS sampled every {SAMPLE_MS} ms ({pb['samples']} / {pf['samples']} samples); "
        f"syscalls counted in a separate strace -f pass "
        f"(delivered {pb['traced_delivered']} / {pf['traced_delivered']})"
        + ("; perf stat counted fsync+fdatasync tracepoints in the throughput pass."
           if PERF else "; perf unavailable: no untraced fsync count."))
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(outdir, "smtp-" + time.strftime("%Y%m%dT%H%M%S") + ".txt"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
