"""The drill's second column: Postfix + BIND9 as the design deployment had
them, run on the host inside the drill's namespace at the board's address
(10.77.0.2 on br0), in place of the QEMU board. Same interface as
drill.Board: t0, n, lines (time-stamped, with DRILL-* memory lines in the
board's format), find/wait/type/cut.

Capped: both daemons run in a memory cgroup of their own, made under the
drill's own (cgroup v2 if the host mounts it at /sys/fs/cgroup, else the
v1 memory controller), limited to what the 64 MB guest leaves to user
space (--budget-mib) with no swap: over it, the kernel's OOM killer acts
inside the cgroup as it would in the board. The cgroup's usage, peak and
OOM kills are sampled every second, with each daemon's PSS; the cgroup is
removed at the end.
"""
import os
import re
import signal
import socket
import subprocess
import threading
import time

BOARD = "10.77.0.2"
WORLD = "10.77.0.1"
LAPTOP = "10.77.0.20"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def prepare(args, work):
    """Postfix's config and queue directories and named's, under work/."""
    pf = os.path.join(work, "postfix")
    etc, spool, data = (os.path.join(pf, d) for d in ("etc", "spool", "data"))
    for d in (etc, spool, data):
        os.makedirs(d, exist_ok=True)
    subprocess.run(["chown", "postfix:postfix", data], check=True)
    # Debian's master.cf with chroot off (the chroot needs its own resolv.conf).
    master = open("/etc/postfix/master.cf").read()
    master = re.sub(r"^(\S+\s+(?:inet|unix|unix-dgram|fifo|pass)\s+\S+\s+\S+\s+)y(\s)", r"\1n\2", master, flags=re.M)
    write(os.path.join(etc, "master.cf"), master)
    write(os.path.join(etc, "main.cf"), f"""# The design deployment (issue 15): Debian's defaults, a relay for the
# household's domain with reject_unknown_client_hostname, 12 processes.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = board.home.test
mydestination =
inet_interfaces = {BOARD}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = home.test
transport_maps = inline:{{home.test=smtp:[{LAPTOP}]:25}}
smtpd_client_restrictions = reject_unknown_client_hostname
default_process_limit = 12
maillog_file_prefixes = {pf}
maillog_file = {pf}/maillog
smtputf8_enable = no
""")
    named = os.path.join(work, "named")
    os.makedirs(named, exist_ok=True)
    write(os.path.join(named, "home.arpa.zone"),
          "$TTL 300\n@ IN SOA ns.home.arpa. h.home.arpa. 1 3600 600 86400 300\n@ IN NS ns\nns IN A 10.77.0.2\n"
          f"laptop IN A {LAPTOP}\n")
    write(os.path.join(named, "named.conf"), f"""options {{
    directory "{named}";
    pid-file "{named}/named.pid";
    session-keyfile "{named}/session.key";
    listen-on port 53 {{ {BOARD}; }};
    listen-on-v6 {{ none; }};
    forwarders {{ {WORLD}; }};
    forward only;
    recursion yes;
    allow-query {{ any; }};
    allow-recursion {{ any; }};
    // Debian's default is "auto"; the test world has no signed root.
    dnssec-validation no;
}};
zone "home.arpa" {{ type master; file "{named}/home.arpa.zone"; }};
""")
    return etc, named


class Cgroup:
    """A memory cgroup for the host stack, capped at `limit` bytes, no swap."""

    def __init__(self, name, limit, mnt):
        entries = [line.rstrip("\n").split(":", 2) for line in open("/proc/self/cgroup")]
        v1 = [path for _, ctrl, path in entries if "memory" in ctrl.split(",")]
        self.v2 = not v1
        own = v1[0] if v1 else next(path for hid, _, path in entries if hid == "0")
        root = "/sys/fs/cgroup" if self.v2 else "/sys/fs/cgroup/memory"
        if not os.path.exists(os.path.join(root, "cgroup.procs")):
            # `ip netns exec` mounts a sysfs of its own, without the cgroup
            # file systems: mount the hierarchy again, in the drill's
            # mount namespace only (it goes with the namespace).
            os.makedirs(mnt, exist_ok=True)
            fs = ["-t", "cgroup2", "none"] if self.v2 else ["-t", "cgroup", "-o", "memory", "none"]
            subprocess.run(["mount", *fs, mnt], check=True)
            root = mnt
        self.path = os.path.join(root + own, name)
        os.makedirs(self.path, exist_ok=True)
        if self.v2:
            self.set("memory.max", limit)
            self.set("memory.swap.max", 0)
        else:
            self.set("memory.limit_in_bytes", limit)
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                self.set("memory.memsw.limit_in_bytes", limit)

    def set(self, key, value):
        with open(os.path.join(self.path, key), "w") as f:
            f.write(str(value))

    def read(self, key):
        try:
            return open(os.path.join(self.path, key)).read()
        except OSError:
            return ""

    def enter(self):
        """In the child, before exec (Popen's preexec_fn): join the cgroup."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def sample(self):
        """(usage, peak, oom kills, reclaimable) in bytes; usage includes page cache."""
        if self.v2:
            usage = int(self.read("memory.current") or 0)
            peak = int(self.read("memory.peak") or usage)
            ev = self.read("memory.events")
            stat = self.read("memory.stat")
            inactive = re.search(r"^inactive_file (\d+)", stat, re.M)
        else:
            usage = int(self.read("memory.usage_in_bytes") or 0)
            peak = int(self.read("memory.max_usage_in_bytes") or usage)
            ev = self.read("memory.oom_control")
            stat = self.read("memory.stat")
            inactive = re.search(r"^total_inactive_file (\d+)", stat, re.M)
        oom = re.search(r"^oom_kill (\d+)", ev, re.M)
        return usage, peak, int(oom.group(1)) if oom else 0, int(inactive.group(1)) if inactive else 0

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


class HostStack:
    """Postfix + named started ("booted") in the namespace; cut = SIGKILL to all."""

    def __init__(self, args, work, conf, n, cgroup):
        self.args, self.work, self.n, self.cg = args, work, n, cgroup
        self.etc, self.named_dir = conf
        self.lines, self.lock = [], threading.Lock()
        self.logf = open(os.path.join(work, f"boot{n}.log"), "w", buffering=1)
        self.t0 = time.time()
        self.stopped = False
        self.my_net = os.stat("/proc/self/ns/net").st_ino
        out = open(os.path.join(work, f"daemons{n}.out"), "w")
        self.named = subprocess.Popen(["named", "-g", "-c", os.path.join(self.named_dir, "named.conf")],
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=self.cg.enter)
        # The queue's directories (a new queue_directory has none; `postfix check` does not make them).
        subprocess.run(["/usr/lib/postfix/sbin/post-install", f"config_directory={self.etc}",
                        "meta_directory=/etc/postfix", "create-missing"], stdout=out, stderr=subprocess.STDOUT)
        self.proc = subprocess.Popen(["postfix", "-c", self.etc, "start-fg"], stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=self.cg.enter)
        threading.Thread(target=self.watch, daemon=True).start()

    def add(self, line):
        t = time.time()
        with self.lock:
            self.lines.append((t, line))
        self.logf.write(f"{t - self.t0:9.3f} {line}\n")

    def pids(self):
        out = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                if os.stat(f"/proc/{p}/ns/net").st_ino != self.my_net:
                    continue
                exe = os.readlink(f"/proc/{p}/exe")
            except OSError:
                continue
            if exe.startswith("/usr/lib/postfix/") or exe.endswith("/named"):
                out.append((int(p), exe))
        return out

    def watch(self):
        listening = dns = False
        budget = int(self.args.budget_mib * 1024)
        while not self.stopped:
            total = {"postfix": 0, "named": 0}
            for pid, exe in self.pids():
                try:
                    pss = int(re.search(r"^Pss:\s+(\d+)", open(f"/proc/{pid}/smaps_rollup").read(), re.M).group(1))
                    st = open(f"/proc/{pid}/status").read()
                    hwm = re.search(r"VmHWM:\s+(\d+)", st).group(1)
                    rss = re.search(r"VmRSS:\s+(\d+)", st).group(1)
                    cmd = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")[:40]
                except (OSError, AttributeError):
                    continue
                total["named" if exe.endswith("/named") else "postfix"] += pss
                name = os.path.basename(exe)
                self.add(f"DRILL-P {pid} VmHWM: {hwm} kB VmRSS: {rss} kB | {name} {cmd}")
            for k, v in total.items():
                self.add(f"DRILL-CG {k}-pss {v * 1024} {v * 1024}")
            usage, peak, oom, inactive = self.cg.sample()
            self.add(f"DRILL-CG postfix+named {usage} {peak} {oom}")
            # As the guest's MemAvailable: the budget less what is in use,
            # the cgroup's inactive page cache counted as available.
            self.add(f"DRILL-MEM avail={budget - (usage - inactive) // 1024} swaptotal=0 swapfree=0")
            if not listening:
                try:
                    socket.create_connection((BOARD, 25), 1).close()
                    listening = True
                    self.add("mail: listening on 10.77.0.2:25 (postfix)")
                except OSError:
                    pass
            if not dns:
                r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", f"@{BOARD}", "laptop.home.arpa"],
                                   capture_output=True, text=True)
                if r.stdout.strip() == LAPTOP:
                    dns = True
                    self.add("supervisor: dns is primed (named answers)")
            time.sleep(1)

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
            time.sleep(0.5)
        return None

    def wait_shell(self, timeout):
        return True

    def type(self, line):
        pass

    def final(self):
        q = subprocess.run(["postqueue", "-c", self.etc, "-p"], capture_output=True, text=True)
        for l in q.stdout.splitlines()[-3:]:
            self.add(f"postqueue: {l}")

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        self.cut()

    def cut(self):
        """The power cut: SIGKILL to every Postfix and named process in the namespace."""
        self.stopped = True
        for _ in range(3):
            for pid, _exe in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        for p in (self.proc, self.named):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        # A killed master leaves its pid file; the next start must not see it as running.
        for f in (os.path.join(self.work, "postfix/spool/pid/master.pid"),):
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass
        return time.time()
