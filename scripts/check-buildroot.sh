#!/usr/bin/env bash
# scripts/check-buildroot.sh [PROJECT_ROOT [EXTERNAL_TREE]]: checks the
# Buildroot BR2_EXTERNAL tree (buildroot/) against the project it builds,
# without Buildroot (which this machine cannot download): the tree's
# structure, its Kconfig and make files at a basic level, one defconfig
# per board of PROJECT_ROOT/board/ whose CPU, float ABI and C library
# give the Rust target of the board's BOARD_ARCH, the files the
# defconfigs name, the genimage partition layout against board.conf and
# the image's labels, the kernel fragments against the modules board.conf
# lists, and Cross.toml's targets. Each check prints "ok: ..." or
# "FAIL: ..."; the exit status is 1 when any failed. Needs bash and
# python3 only; runs in well under a second.
#
# PROJECT_ROOT (default: this script's repository) gives board/,
# rootfs-overlay/ and Cross.toml; EXTERNAL_TREE (default: buildroot/ of
# this script's repository) is the tree checked. Paths in the tree that go
# through $(BR2_EXTERNAL_POCOBELLE_PATH) resolve from EXTERNAL_TREE.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "${1:-${POCOBELLE_ROOT:-$here}}" && pwd)
ext=$(cd "${2:-${POCOBELLE_BR2_EXTERNAL:-$here/buildroot}}" && pwd)
exec python3 - "$root" "$ext" <<'PYEOF'
import os, re, shlex, sys

root, ext = sys.argv[1], sys.argv[2]
failures = 0

def ok(msg):
    print(f"ok: {msg}")

def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}")

def check(cond, good, bad):
    (ok if cond else fail)(good if cond else bad)
    return cond

def rel(p):
    for base, name in ((ext, "buildroot"), (root, "")):
        if p == base:
            return name or "."
        if p.startswith(base + "/"):
            return os.path.join(name, p[len(base) + 1:]) if name else p[len(base) + 1:]
    return p

def read(p):
    with open(p, encoding="utf-8") as f:
        return f.read()

# Rust target of each BOARD_ARCH (the Makefile's triples).
ARCH_TRIPLE = {
    "armv7": "armv7-unknown-linux-gnueabihf",
    "armv5te": "armv5te-unknown-linux-gnueabi",
}
# Labels of the project's image (scripts/image.sh, board/common/initramfs-init).
LABELS = {"boot": "POCOBOOT", "root": "pocoroot", "data": "pocodata"}
# Buildroot's ARM CPU options by class (arch/Config.in.arm), and the arch
# part of RUSTC_TARGET_NAME each class gives (package/rustc/Config.in.host).
ARMV7A_CPUS = {"BR2_cortex_a5", "BR2_cortex_a7", "BR2_cortex_a8", "BR2_cortex_a9",
               "BR2_cortex_a12", "BR2_cortex_a15", "BR2_cortex_a15_a7",
               "BR2_cortex_a17", "BR2_cortex_a17_a7", "BR2_pj4"}
ARMV5_CPUS = {"BR2_arm926t", "BR2_arm920t", "BR2_arm922t", "BR2_xscale", "BR2_iwmmxt"}
ALL_CPUS = ARMV7A_CPUS | ARMV5_CPUS

def shell_vars(path):
    """KEY=value lines of a board.conf (shell syntax, simple values)."""
    out = {}
    for line in read(path).splitlines():
        m = re.match(r'^([A-Z_][A-Z0-9_]*)=(.*)$', line.strip())
        if m:
            try:
                words = shlex.split(m.group(2), comments=True)
            except ValueError:
                words = [m.group(2)]
            out[m.group(1)] = " ".join(words)
    return out

def defconfig(path):
    """{SYMBOL: value} of a defconfig; 'is not set' gives 'n'."""
    out = {}
    for n, line in enumerate(read(path).splitlines(), 1):
        s = line.strip()
        m = re.match(r'^(BR2_[A-Za-z0-9_]+)=(.*)$', s)
        if m:
            v = m.group(2)
            if v.startswith('"'):
                if not (len(v) >= 2 and v.endswith('"')):
                    fail(f"{rel(path)}:{n}: unterminated string")
                v = v[1:-1]
            out[m.group(1)] = v
            continue
        m = re.match(r'^# (BR2_[A-Za-z0-9_]+) is not set$', s)
        if m:
            out[m.group(1)] = "n"
            continue
        if s and not s.startswith("#"):
            fail(f"{rel(path)}:{n}: not a defconfig line: {s}")
    return out

def ext_path(word):
    """A path through $(BR2_EXTERNAL_POCOBELLE_PATH), resolved; else None."""
    for token in ("$(BR2_EXTERNAL_POCOBELLE_PATH)", "${BR2_EXTERNAL_POCOBELLE_PATH}",
                  "$BR2_EXTERNAL_POCOBELLE_PATH"):
        if word.startswith(token):
            return os.path.normpath(ext + word[len(token):])
    return None

# --- the boards of the project --------------------------------------------
board_dir = os.path.join(root, "board")
boards = {}
if os.path.isdir(board_dir):
    for name in sorted(os.listdir(board_dir)):
        conf = os.path.join(board_dir, name, "board.conf")
        if name != "common" and os.path.isfile(conf):
            boards[name] = shell_vars(conf)
check(boards, f"{len(boards)} boards in {rel(board_dir)}: {', '.join(boards)}",
      f"no board/<name>/board.conf in {board_dir}")

# --- external.desc, external.mk --------------------------------------------
desc_p = os.path.join(ext, "external.desc")
if check(os.path.isfile(desc_p), "buildroot/external.desc exists", "buildroot/external.desc is missing"):
    desc = dict(re.findall(r'^(name|desc):\s*(.*?)\s*$', read(desc_p), re.M))
    check(desc.get("name") == "POCOBELLE", "external.desc: name is POCOBELLE",
          f"external.desc: name is {desc.get('name')!r}, not POCOBELLE (BR2_EXTERNAL_POCOBELLE_PATH depends on it)")
    check(bool(desc.get("desc")), "external.desc: desc is set", "external.desc: no desc line")
mk_p = os.path.join(ext, "external.mk")
if check(os.path.isfile(mk_p), "buildroot/external.mk exists", "buildroot/external.mk is missing"):
    check(re.search(r'^include .*\$\(BR2_EXTERNAL_POCOBELLE_PATH\)/package/\*/\*\.mk', read(mk_p), re.M),
          "external.mk includes package/*/*.mk", "external.mk does not include $(BR2_EXTERNAL_POCOBELLE_PATH)/package/*/*.mk")

# --- Config.in files ---------------------------------------------------------
TYPES = {"bool", "tristate", "string", "int", "hex"}

def parse_kconfig(path):
    """Basic Kconfig check: blocks balanced, every config typed, every
    source found. Returns the files it sources."""
    sourced, stack, errors = [], [], []
    cur = None          # (symbol, line) of the config entry being read
    typed = set()
    help_indent = None  # inside help text: its indentation, or -1 before the first line
    lines = read(path).splitlines()
    def close_entry():
        nonlocal cur
        if cur and cur[0] not in typed:
            errors.append(f"line {cur[1]}: config {cur[0]} has no type (bool, string, ...)")
        cur = None
    for n, raw in enumerate(lines, 1):
        line = raw.expandtabs(8)
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if help_indent is not None:
            if not stripped:
                continue
            if help_indent == -1:
                help_indent = indent
                continue
            if indent >= help_indent:
                continue
            help_indent = None
        if not stripped or stripped.startswith("#"):
            continue
        word = stripped.split()[0]
        rest = stripped[len(word):].strip()
        if word in ("config", "menuconfig"):
            close_entry()
            if not re.fullmatch(r'[A-Za-z0-9_]+', rest):
                errors.append(f"line {n}: bad symbol {rest!r}")
            cur = (rest, n)
        elif word in TYPES or (word.startswith("def_") and word[4:] in TYPES):
            if cur:
                typed.add(cur[0])
        elif word in ("help", "---help---"):
            help_indent = -1
        elif word in ("menu", "if", "choice"):
            close_entry()
            stack.append((word, n))
        elif word in ("endmenu", "endif", "endchoice"):
            close_entry()
            want = {"endmenu": "menu", "endif": "if", "endchoice": "choice"}[word]
            if not stack or stack[-1][0] != want:
                errors.append(f"line {n}: {word} without {want}")
            else:
                stack.pop()
        elif word in ("source", "rsource", "osource", "orsource"):
            close_entry()
            m = re.fullmatch(r'"([^"]+)"', rest)
            if not m:
                errors.append(f"line {n}: source needs a quoted path")
                continue
            target = ext_path(m.group(1))
            if target is None:
                errors.append(f"line {n}: source {m.group(1)} does not go through $BR2_EXTERNAL_POCOBELLE_PATH")
            elif not os.path.isfile(target):
                errors.append(f"line {n}: source {m.group(1)}: {rel(target)} does not exist")
            else:
                sourced.append(target)
        elif word in ("comment", "mainmenu"):
            close_entry()
        elif word in ("depends", "select", "imply", "default", "range", "prompt", "visible", "option", "modules"):
            pass
        else:
            errors.append(f"line {n}: unknown keyword {word!r}")
    close_entry()
    for word, n in stack:
        errors.append(f"line {n}: {word} is never closed")
    for e in errors:
        fail(f"{rel(path)}: {e}")
    if not errors:
        ok(f"{rel(path)} parses (blocks balanced, every config typed, sources found)")
    return sourced

top = os.path.join(ext, "Config.in")
seen, todo = set(), [top] if os.path.isfile(top) else []
if not todo:
    fail("buildroot/Config.in is missing")
while todo:
    p = todo.pop()
    if p not in seen:
        seen.add(p)
        todo.extend(parse_kconfig(p))
pkg_root = os.path.join(ext, "package")
packages = sorted(d for d in os.listdir(pkg_root) if os.path.isdir(os.path.join(pkg_root, d))) if os.path.isdir(pkg_root) else []
for pkg in packages:
    cin = os.path.join(pkg_root, pkg, "Config.in")
    check(cin in seen, f"package/{pkg}/Config.in is sourced from Config.in",
          f"package/{pkg}/Config.in is missing or not sourced from buildroot/Config.in")
    check(os.path.isfile(os.path.join(pkg_root, pkg, pkg + ".mk")), f"package/{pkg}/{pkg}.mk exists",
          f"package/{pkg}/{pkg}.mk is missing")
check("pocobelle" in packages, "package/pocobelle exists", "package/pocobelle is missing")

# --- pocobelle.mk --------------------------------------------------------------
mk = os.path.join(pkg_root, "pocobelle", "pocobelle.mk")
if os.path.isfile(mk):
    text = read(mk)
    assigns, defines = {}, {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r'^define\s+([A-Z0-9_]+)\s*$', line)
        if m:
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != "endef":
                body.append(lines[i])
                i += 1
            defines[m.group(1)] = "\n".join(body)
        else:
            m = re.match(r'^([A-Z0-9_]+)\s*(\+|:|\?)?=\s*(.*)$', line)
            if m:
                value = m.group(3)
                while value.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    value = value[:-1] + " " + lines[i].strip()
                assigns[m.group(1)] = (assigns.get(m.group(1), "") + " " + value).strip() if m.group(2) == "+" else value
        i += 1
    for var in ("POCOBELLE_VERSION", "POCOBELLE_SITE", "POCOBELLE_SITE_METHOD", "POCOBELLE_LICENSE", "POCOBELLE_CARGO_ENV"):
        check(assigns.get(var), f"pocobelle.mk sets {var}", f"pocobelle.mk does not set {var}")
    check(assigns.get("POCOBELLE_SITE_METHOD") == "local", "pocobelle.mk: SITE_METHOD is local",
          f"pocobelle.mk: SITE_METHOD is {assigns.get('POCOBELLE_SITE_METHOD')!r}, not local")
    check(assigns.get("POCOBELLE_SUBDIR") or "-p pocobelle" in assigns.get("POCOBELLE_CARGO_BUILD_OPTS", "")
          or "--package pocobelle" in assigns.get("POCOBELLE_CARGO_BUILD_OPTS", ""),
          "pocobelle.mk selects the crate (POCOBELLE_SUBDIR or --package)",
          "pocobelle.mk sets neither POCOBELLE_SUBDIR nor --package in POCOBELLE_CARGO_BUILD_OPTS")
    site = ext_path(assigns.get("POCOBELLE_SITE", ""))
    if check(site and os.path.isfile(os.path.join(site, "Cargo.toml")) and os.path.isfile(os.path.join(site, "Cargo.lock")),
             f"POCOBELLE_SITE is the workspace ({rel(site) if site else '?'}: Cargo.toml, Cargo.lock)",
             f"POCOBELLE_SITE={assigns.get('POCOBELLE_SITE')!r} is not a $(BR2_EXTERNAL_POCOBELLE_PATH) path to a workspace with Cargo.toml and Cargo.lock"):
        crate = os.path.join(site, assigns.get("POCOBELLE_SUBDIR", ""), "Cargo.toml")
        check(os.path.isfile(crate) and re.search(r'^name\s*=\s*"pocobelle"', read(crate), re.M),
              f"POCOBELLE_SUBDIR holds the pocobelle crate ({rel(crate)})",
              f"{rel(crate)} is not the pocobelle crate")
    check("+crt-static" in assigns.get("POCOBELLE_CARGO_ENV", ""), "pocobelle.mk links statically (+crt-static)",
          "pocobelle.mk: POCOBELLE_CARGO_ENV has no -Ctarget-feature=+crt-static")
    install = defines.get("POCOBELLE_INSTALL_TARGET_CMDS", "")
    check("$(TARGET_DIR)/bin/pocobelle" in install, "pocobelle.mk installs /bin/pocobelle",
          "pocobelle.mk: POCOBELLE_INSTALL_TARGET_CMDS does not install $(TARGET_DIR)/bin/pocobelle")
    check("POCOBELLE_APPLET_LINKS" in install, "pocobelle.mk makes the applet links",
          "pocobelle.mk: POCOBELLE_INSTALL_TARGET_CMDS does not use POCOBELLE_APPLET_LINKS")
    overlay = os.path.join(root, "rootfs-overlay")
    want = set()
    for d, _, files in os.walk(overlay):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p) and os.readlink(p) == "/bin/pocobelle":
                want.add(os.path.relpath(p, overlay))
    have = set(assigns.get("POCOBELLE_APPLET_LINKS", "").split())
    check(have == want and want, f"POCOBELLE_APPLET_LINKS = the links of rootfs-overlay ({len(want)})",
          f"POCOBELLE_APPLET_LINKS differs from rootfs-overlay's links to /bin/pocobelle: "
          f"missing {sorted(want - have)}, extra {sorted(have - want)}")
    meaningful = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
    check(meaningful and meaningful[-1] == "$(eval $(cargo-package))",
          "pocobelle.mk ends with $(eval $(cargo-package))",
          "pocobelle.mk does not end with $(eval $(cargo-package))")
else:
    fail("buildroot/package/pocobelle/pocobelle.mk is missing")

# --- defconfigs, one per board ---------------------------------------------------
cfg_dir = os.path.join(ext, "configs")
found = sorted(f for f in os.listdir(cfg_dir) if f.endswith("_defconfig")) if os.path.isdir(cfg_dir) else []
wanted = {f"pocobelle_{b}_defconfig": b for b in boards}
for f in found:
    if f not in wanted:
        fail(f"configs/{f} is not pocobelle_<board>_defconfig of a board in {rel(board_dir)}")
ext_boards = os.path.join(ext, "board")
for d in sorted(os.listdir(ext_boards)) if os.path.isdir(ext_boards) else []:
    if d != "common" and d not in boards and os.path.isdir(os.path.join(ext_boards, d)):
        fail(f"buildroot/board/{d} has no board {rel(board_dir)}/{d}/board.conf")

def modules_in_fragments(paths):
    mods = set()
    for p in paths:
        lines = read(p).splitlines()
        for i, line in enumerate(lines):
            m = re.match(r'^# module:\s*(\S+)\s*$', line)
            if m and i + 1 < len(lines) and re.match(r'^CONFIG_[A-Z0-9_]+=[ym]$', lines[i + 1]):
                mods.add(m.group(1).replace("-", "_"))
    return mods

for f, board in sorted(wanted.items()):
    path = os.path.join(cfg_dir, f)
    if not check(f in found, f"configs/{f} exists for board {board}", f"configs/{f} is missing (board {board})"):
        continue
    c = defconfig(path)
    conf = boards[board]
    arch = conf.get("BOARD_ARCH", "")
    want_triple = ARCH_TRIPLE.get(arch)
    if not check(want_triple, f"{board}: BOARD_ARCH {arch}", f"{board}: BOARD_ARCH {arch!r} is not one of {sorted(ARCH_TRIPLE)}"):
        continue
    # CPU, ABI and C library, and the Rust target Buildroot derives from them.
    cpus = [s for s in ALL_CPUS if c.get(s) == "y"]
    check(c.get("BR2_arm") == "y" and len(cpus) == 1, f"{f}: BR2_arm with one CPU ({', '.join(cpus)})",
          f"{f}: needs BR2_arm=y and exactly one ARM CPU option, has {cpus}")
    cpu = cpus[0] if len(cpus) == 1 else None
    rust_arch = "armv7" if cpu in ARMV7A_CPUS else "armv5te" if cpu in ARMV5_CPUS else None
    abi = "eabihf" if c.get("BR2_ARM_EABIHF") == "y" else "eabi" if c.get("BR2_ARM_EABI") == "y" else None
    libc = ("gnu" if c.get("BR2_TOOLCHAIN_BUILDROOT_GLIBC") == "y" else
            "musl" if c.get("BR2_TOOLCHAIN_BUILDROOT_MUSL") == "y" else
            "uclibc" if c.get("BR2_TOOLCHAIN_BUILDROOT_UCLIBC") == "y" else None)
    if arch == "armv7":
        check(cpu in ARMV7A_CPUS and abi == "eabihf", f"{f}: ARMv7-A CPU, EABIhf (BOARD_ARCH armv7)",
              f"{f}: BOARD_ARCH armv7 needs an ARMv7-A CPU (BR2_cortex_a7, ...) and BR2_ARM_EABIHF=y")
    elif arch == "armv5te":
        check(cpu == "BR2_arm926t" and abi == "eabi" and c.get("BR2_ARM_EABIHF") != "y",
              f"{f}: ARM926T, EABI soft-float (BOARD_ARCH armv5te)",
              f"{f}: BOARD_ARCH armv5te needs BR2_arm926t=y and BR2_ARM_EABI=y")
        check(c.get("BR2_ARM_SOFT_FLOAT", "y") == "y" and not any(c.get(k) == "y" for k in c if k.startswith("BR2_ARM_FPU_")),
              f"{f}: no FPU (Feroceon has none)", f"{f}: BOARD_ARCH armv5te must not select an FPU")
    triple = f"{rust_arch}-unknown-linux-{libc}{abi}" if rust_arch and abi and libc else None
    check(triple == want_triple, f"{f}: Rust target {triple} (the project's for {arch})",
          f"{f}: Buildroot would build for {triple}, the project's {arch} binary is {want_triple} "
          f"(set the CPU, ABI and BR2_TOOLCHAIN_BUILDROOT_GLIBC=y explicitly)")
    check(c.get("BR2_STATIC_LIBS") == "y" or c.get("BR2_SHARED_STATIC_LIBS") == "y",
          f"{f}: static libraries for the static binaries", f"{f}: neither BR2_STATIC_LIBS nor BR2_SHARED_STATIC_LIBS")
    # The packages and settings the image is made of.
    need = (("BR2_PACKAGE_POCOBELLE", "the binary"), ("BR2_INIT_NONE", "pocobelle is PID 1"),
            ("BR2_PACKAGE_BUSYBOX_CONFIG_FRAGMENT_FILES", "static BusyBox"),
            ("BR2_PACKAGE_E2FSPROGS", "e2fsck"), ("BR2_PACKAGE_CA_CERTIFICATES", "CA bundle"),
            ("BR2_LINUX_KERNEL", "kernel"), ("BR2_TARGET_ROOTFS_EXT2_4", "ext4 root"),
            ("BR2_PACKAGE_HOST_GENIMAGE", "genimage"), ("BR2_PACKAGE_HOST_DOSFSTOOLS", "FAT"),
            ("BR2_PACKAGE_HOST_MTOOLS", "FAT"), ("BR2_PACKAGE_HOST_UBOOT_TOOLS", "mkimage"))
    unset = [f"{sym} ({why})" for sym, why in need if c.get(sym) in (None, "n", "")]
    check(not unset, f"{f}: pocobelle as PID 1, kernel, BusyBox, e2fsprogs, CA bundle, ext4 root, image tools",
          f"{f}: not set: {', '.join(unset)}")
    check(c.get("BR2_PACKAGE_BUSYBOX", "y") != "n", f"{f}: BusyBox kept", f"{f}: BusyBox is disabled")
    check(c.get("BR2_TARGET_ROOTFS_EXT2_LABEL") == LABELS["root"], f"{f}: root file system labelled {LABELS['root']}",
          f"{f}: BR2_TARGET_ROOTFS_EXT2_LABEL is {c.get('BR2_TARGET_ROOTFS_EXT2_LABEL')!r}, not {LABELS['root']}")
    check(c.get("BR2_TARGET_ROOTFS_EXT2_SIZE") == f"{conf.get('ROOT_MIB')}M", f"{f}: root size {conf.get('ROOT_MIB')}M (ROOT_MIB)",
          f"{f}: BR2_TARGET_ROOTFS_EXT2_SIZE {c.get('BR2_TARGET_ROOTFS_EXT2_SIZE')!r} is not ROOT_MIB={conf.get('ROOT_MIB')}M")
    check(c.get("BR2_ROOTFS_POST_SCRIPT_ARGS") == board, f"{f}: post scripts get the board name",
          f"{f}: BR2_ROOTFS_POST_SCRIPT_ARGS is {c.get('BR2_ROOTFS_POST_SCRIPT_ARGS')!r}, not {board}")
    overlays = [ext_path(w) for w in c.get("BR2_ROOTFS_OVERLAY", "").split()]
    check(os.path.normpath(os.path.join(ext, "..", "rootfs-overlay")) in overlays,
          f"{f}: overlays the project's rootfs-overlay/", f"{f}: BR2_ROOTFS_OVERLAY does not name $(BR2_EXTERNAL_POCOBELLE_PATH)/../rootfs-overlay")
    # Every file named through the external tree exists; scripts are executable.
    named, bad = 0, 0
    for sym, value in sorted(c.items()):
        for word in value.split():
            p = ext_path(word)
            if p is None:
                continue
            named += 1
            if not os.path.exists(p):
                bad += 1
                fail(f"{f}: {sym} names {word}, which does not exist ({p})")
            elif sym in ("BR2_ROOTFS_POST_BUILD_SCRIPT", "BR2_ROOTFS_POST_IMAGE_SCRIPT") and not os.access(p, os.X_OK):
                bad += 1
                fail(f"{f}: {rel(p)} is not executable (Buildroot runs it directly)")
    if not bad:
        ok(f"{f}: the {named} files it names through $(BR2_EXTERNAL_POCOBELLE_PATH) exist")
    # The kernel: image format and device tree as board.conf says; every
    # module board.conf lists has a fragment line.
    kfmt = conf.get("KERNEL_FORMAT")
    check(c.get("BR2_LINUX_KERNEL_ZIMAGE") == "y" and kfmt in ("zImage", "uImage"),
          f"{f}: zImage (board.conf: {kfmt}{', made by post-image.sh' if kfmt == 'uImage' else ''})",
          f"{f}: needs BR2_LINUX_KERNEL_ZIMAGE=y for KERNEL_FORMAT {kfmt!r}")
    dtb = conf.get("DTB", "")
    dts = [os.path.basename(d) + ".dtb" for d in c.get("BR2_LINUX_KERNEL_INTREE_DTS_NAME", "").split()]
    if dtb:
        check(dtb in dts, f"{f}: builds {dtb} (DTB)", f"{f}: board.conf DTB {dtb} is not in BR2_LINUX_KERNEL_INTREE_DTS_NAME")
    if conf.get("DTB_DIR"):
        check(dts, f"{f}: builds {len(dts)} device trees for {conf['DTB_DIR']}/",
              f"{f}: board.conf DTB_DIR is set but BR2_LINUX_KERNEL_INTREE_DTS_NAME is empty")
    frags = [ext_path(w) for w in c.get("BR2_LINUX_KERNEL_CONFIG_FRAGMENT_FILES", "").split()]
    frags = [p for p in frags if p and os.path.isfile(p)]
    have = modules_in_fragments(frags)
    listed = (conf.get("INITRAMFS_MODULES", "") + " " + conf.get("MODULES", "")).split()
    missing = sorted(m for m in listed if m.replace("-", "_") not in have)
    check(listed and not missing, f"{f}: the kernel fragments provide the {len(listed)} modules board.conf lists",
          f"{f}: no '# module: NAME' line with its CONFIG_ in the kernel fragments for {missing}")
    # genimage: the project's three partitions, labels and sizes.
    gpath = os.path.join(ext, "board", board, "genimage.cfg")
    if not check(os.path.isfile(gpath), f"buildroot/board/{board}/genimage.cfg exists", f"buildroot/board/{board}/genimage.cfg is missing"):
        continue
    # A small libconfuse reader: sections "name [title] { ... }", "key = value".
    toks = re.findall(r'"(?:[^"\\]|\\.)*"|[{}=]|[^\s{}="]+', re.sub(r'#[^\n]*', '', read(gpath)))
    def parse_section(i):
        node = {"_sections": []}
        while i < len(toks) and toks[i] != "}":
            key = toks[i]
            if toks[i + 1] == "=":
                node[key] = toks[i + 2].strip('"')
                i += 3
            elif toks[i + 1] == "{":
                sub, i = parse_section(i + 2)
                node["_sections"].append((key, None, sub))
                i += 1
            elif toks[i + 2] == "{":
                title = toks[i + 1].strip('"')
                sub, i = parse_section(i + 3)
                node["_sections"].append((key, title, sub))
                i += 1
            else:
                raise ValueError(f"unexpected {key!r} near token {i}")
        return node, i
    try:
        g, end = parse_section(0)
        if end != len(toks):
            raise ValueError("unbalanced braces")
    except (ValueError, IndexError) as e:
        fail(f"board/{board}/genimage.cfg does not parse: {e}")
        continue
    images = {title: sub for key, title, sub in g["_sections"] if key == "image"}
    def fs(img, kind):
        sub = images.get(img, {"_sections": []})
        return next((s for k, _, s in sub["_sections"] if k == kind), None)
    disk_name = f"pocobelle-{board}.img"
    disk = images.get(disk_name)
    if not check(disk and fs(disk_name, "hdimage") is not None, f"genimage {board}: disk {disk_name} (hdimage)",
                 f"genimage {board}: no image {disk_name} with an hdimage section"):
        continue
    hd = fs(disk_name, "hdimage")
    check(hd.get("partition-table-type", "mbr") == "mbr" and hd.get("gpt", "false") == "false",
          f"genimage {board}: MBR partition table", f"genimage {board}: the partition table must be MBR")
    parts = [(title, sub) for key, title, sub in disk["_sections"] if key == "partition"]
    if not check(len(parts) == 3, f"genimage {board}: three partitions ({', '.join(t for t, _ in parts)})",
                 f"genimage {board}: {len(parts)} partitions, the image has three (boot, root, data)"):
        continue
    (bt, bp), (rt, rp), (dt, dp) = parts
    mib = lambda s: int(s[:-1]) if s and s.endswith("M") and s[:-1].isdigit() else None
    # 1: FAT "POCOBOOT", bootable, at 4 MiB, BOOT_MIB
    vf = fs(bp.get("image", ""), "vfat")
    check(vf is not None and vf.get("label") == LABELS["boot"],
          f"genimage {board}: partition 1 ({bt}) is FAT labelled {LABELS['boot']}",
          f"genimage {board}: partition 1 must be a vfat image labelled {LABELS['boot']}")
    check(bp.get("offset") == "4M" and bp.get("bootable") == "true",
          f"genimage {board}: partition 1 at 4 MiB, bootable", f"genimage {board}: partition 1 must be bootable at offset 4M")
    bsize = mib(images.get(bp.get("image", ""), {}).get("size"))
    check(bsize == int(conf.get("BOOT_MIB", -1)), f"genimage {board}: boot {bsize} MiB (BOOT_MIB)",
          f"genimage {board}: boot image is {bsize} MiB, BOOT_MIB is {conf.get('BOOT_MIB')}")
    # 2: Buildroot's ext4 root (labelled in the defconfig), ROOT_MIB
    check(rp.get("image") == "rootfs.ext4" and rt == LABELS["root"],
          f"genimage {board}: partition 2 ({rt}) is Buildroot's rootfs.ext4 ({LABELS['root']})",
          f"genimage {board}: partition 2 must be named {LABELS['root']} and hold rootfs.ext4")
    check(mib(rp.get("size")) in (None, int(conf.get("ROOT_MIB", -1))), f"genimage {board}: root partition size matches ROOT_MIB",
          f"genimage {board}: root partition is {rp.get('size')}, ROOT_MIB is {conf.get('ROOT_MIB')}")
    # 3: ext4 "pocodata", DATA_MIB
    e4 = fs(dp.get("image", ""), "ext4")
    check(e4 is not None and e4.get("label") == LABELS["data"] and dt == LABELS["data"],
          f"genimage {board}: partition 3 ({dt}) is ext4 labelled {LABELS['data']}",
          f"genimage {board}: partition 3 must be named {LABELS['data']} and hold an ext4 image labelled {LABELS['data']}")
    dsize = mib(images.get(dp.get("image", ""), {}).get("size"))
    check(dsize == int(conf.get("DATA_MIB", -1)), f"genimage {board}: data {dsize} MiB (DATA_MIB)",
          f"genimage {board}: data image is {dsize} MiB, DATA_MIB is {conf.get('DATA_MIB')}")

# --- what the post scripts take from the project ------------------------------------
for p in ("board/common/initramfs-init", "board/common/pocobelle.toml"):
    full = os.path.join(root, p)
    if check(os.path.isfile(full), f"{p} exists (post-image.sh uses it)", f"{p} is missing (post-image.sh uses it)"):
        if p.endswith("initramfs-init"):
            text = read(full)
            lost = [l for l in LABELS.values() if l not in text]
            check(not lost, f"{p} looks for the labels {', '.join(LABELS.values())}",
                  f"{p} does not mention {lost}: the labels here and the image's differ")
image_sh = os.path.join(root, "scripts", "image.sh")
if os.path.isfile(image_sh):
    text = read(image_sh)
    lost = [l for l in LABELS.values() if l not in text]
    check(not lost, "scripts/image.sh uses the same labels", f"scripts/image.sh does not mention {lost}")

# --- Cross.toml --------------------------------------------------------------------
cross = os.path.join(root, "Cross.toml")
if check(os.path.isfile(cross), "Cross.toml exists", "Cross.toml is missing"):
    listed = set(re.findall(r'^\s*\[target\.([A-Za-z0-9_.-]+)\]', read(cross), re.M))
    want = {ARCH_TRIPLE[b["BOARD_ARCH"]] for b in boards.values() if b.get("BOARD_ARCH") in ARCH_TRIPLE}
    check(listed == want, f"Cross.toml lists the boards' targets: {', '.join(sorted(want))}",
          f"Cross.toml lists {sorted(listed)}, the boards need {sorted(want)}")

print(f"check-buildroot: {'FAILED, ' + str(failures) + ' problem(s)' if failures else 'all checks passed'}")
sys.exit(1 if failures else 0)
PYEOF
