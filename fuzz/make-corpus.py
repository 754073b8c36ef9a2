#!/usr/bin/env python3
"""Writes the seed corpora fuzz/corpus/<target>/ (a handful of small files
each), from the fixtures and golden bytes of the firmware's unit tests,
rebuilt here by hand (DNS packets, postcard bodies, spool records, SMTP
transcripts, netlink messages). Run again after a format changes:
    python3 fuzz/make-corpus.py
It only writes files under fuzz/corpus/."""

import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- postcard ------------------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pbytes(b):
    if isinstance(b, str):
        b = b.encode()
    return varint(len(b)) + b


# ---- DNS -----------------------------------------------------------------
def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def header(id_, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def opt(payload=1232, version=0):
    return b"\0" + struct.pack(">HHBBHH", 41, payload, 0, version, 0, 0)


def query(qname, qtype=1, qclass=1, edns=True, id_=0x1234, version=0):
    q = header(id_, 0x0100, 1, 0, 0, 1 if edns else 0) + name(qname)
    q += struct.pack(">HH", qtype, qclass)
    if edns:
        q += opt(version=version)
    return q


def rr(owner, rtype, ttl, rdata, rclass=1):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def answer_a(qname, ttl, ip, id_=77, edns=False):
    m = header(id_, 0x8180, 1, 1, 0, 1 if edns else 0) + name(qname) + struct.pack(">HH", 1, 1)
    m += rr(b"\xc0\x0c", 1, ttl, bytes(ip))
    if edns:
        m += opt()
    return m


def nxdomain(qname, soa_ttl, minimum, id_=78):
    zone = name("example.")
    soa = zone + zone + struct.pack(">IIIII", 1, 2, 3, 4, minimum)
    m = header(id_, 0x8183, 1, 0, 1, 0) + name(qname) + struct.pack(">HH", 1, 1)
    return m + rr(zone, 6, soa_ttl, soa)


def cname_chain(id_=79):
    m = header(id_, 0x8180, 1, 2, 0, 0) + name("www.Example.COM.") + struct.pack(">HH", 1, 1)
    m += rr(b"\xc0\x0c", 5, 300, name("web.example.com."))
    m += rr(b"\xc0\x2a", 1, 60, bytes([192, 0, 2, 7]))
    return m


def txt_answer(qname, ttl, text, id_=80):
    m = header(id_, 0x8180, 1, 1, 0, 0) + name(qname) + struct.pack(">HH", 16, 1)
    return m + rr(b"\xc0\x0c", 16, ttl, bytes([len(text)]) + text.encode())


write("dns_query", "a-edns", query("example.com."))
write("dns_query", "aaaa-plain", query("nas.home.arpa.", 28, edns=False))
write("dns_query", "ptr", query("1.2.0.192.in-addr.arpa.", 12))
write("dns_query", "badvers", query("example.com.", version=1))
write("dns_query", "axfr", query("example.com.", 252))
write("dns_query", "chaos", query("version.bind.", 16, 3))
write("dns_query", "response", answer_a("example.com.", 60, [192, 0, 2, 1]))

answers = {
    "a": answer_a("a.example.", 60, [192, 0, 2, 1]),
    "a-opt": answer_a("b.example.", 3600, [192, 0, 2, 2], edns=True),
    "nxdomain": nxdomain("missing.example.", 900, 300),
    "cname": cname_chain(),
    "txt": txt_answer("t.example.", 5, "hello"),
}
for k, v in answers.items():
    write("dns_answer", k, v)
    write("dns_cache", k, b"\0" + v)
write("dns_answer", "truncated", answers["a"][:-3])
# Scripts: inserts (op 0), lookups (2), clock steps (3), failures (4).
write("dns_cache", "script-fill", b"\x01\x10\x00\x00\x00\x00\x00"
      + b"".join(bytes([0, i, 0, 60, 1, 0x80, 0x41]) for i in range(12))
      + b"\x02\x03\x03\x10\x00\x02\x05\x04\x05")
write("dns_cache", "script-expire", b"\x01\x00\x00\x7f\xff\xff\xff"
      + bytes([0, 1, 0, 10, 0, 20, 0x61, 3, 0xff, 0xff, 2, 1, 3, 0xff, 0xff, 2, 1]))


def snap_entry(key, wire, age_ms, ttl, hits):
    return pbytes(key) + pbytes(wire) + varint(age_ms) + varint(ttl) + varint(hits)


def key_of(qname, qtype=1):
    return name(qname).lower() + struct.pack(">HH", qtype, 1)


def stored(resp):
    # As the cache stores it: ID 0, QR|RA, question lower-cased (our
    # fixtures are lower-case already except the CNAME one).
    b = bytearray(resp)
    b[0:2] = b"\0\0"
    return bytes(b)


entries = [
    snap_entry(key_of("a.example."), stored(answers["a"]), 1500, 60, 3),
    snap_entry(key_of("missing.example."), stored(answers["nxdomain"]), 0, 300, 0),
    snap_entry(key_of("t.example.", 16), stored(answers["txt"]), 10_000, 5, 1),
]
hot = [key_of("a.example.")]
body = varint(1_700_000_000) + varint(len(entries)) + b"".join(entries) + varint(len(hot)) + b"".join(pbytes(k) for k in hot)
write("dns_snapshot", "body", b"\0" + body)
write("dns_snapshot", "body-empty", b"\0" + varint(0) + varint(0) + varint(0))


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


snap_file = b"PCBLDNS\x01" + struct.pack(">IQQ", 1, len(body), fnv1a64(body)) + body
write("dns_snapshot", "file", b"\x01" + snap_file)
write("dns_snapshot", "file-bad-sum", b"\x01" + snap_file[:-1] + b"\xff")

write("dns_dhcp", "render", "# DNS servers of the DHCP lease, written by pocobelle dhcp-event\n192.168.1.1\n2001:db8::53\n")
write("dns_dhcp", "ports", "10.0.0.1:5353\n[2001:db8::1]:53\n[fe80::1]\n# comment\n\n10.0.0.1:5353\n")
write("dns_dhcp", "bad", "0.0.0.0\n224.0.0.1\n255.255.255.255\nnot-an-ip\n1.2.3.4:0\n1.1.1.1\n8.8.8.8\n9.9.9.9\n8.8.4.4\n1.0.0.1\n")

# ---- SMTP ----------------------------------------------------------------
GOOD = b"EHLO c.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"
# flags byte: 1 TLS offered, 2 AUTH offered, 4 submission, 8 MAIL 4xx,
# 16 RCPT 5xx, 32 spool fails, 64/128 AUTH verdict; then chunk size-1 and
# message size limit (64 + 64 * n).
write("smtp_session", "good", bytes([0x13, 0xFF, 4]) + GOOD)
write("smtp_session", "good-bytewise", bytes([0x00, 0x00, 4]) + GOOD)
write("smtp_session", "smuggle", bytes([0x10, 0x20, 4]) + b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nhello\n.\r\nMAIL FROM:<evil@b.test>\r\nRCPT TO:<u@home.arpa>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n")
write("smtp_session", "bdat", bytes([0x00, 0x40, 1]) + b"EHLO x\r\nMAIL FROM:<> SIZE=20\r\nRCPT TO:<u@home.arpa>\r\nRCPT TO:<\"q u\"@[192.0.2.1]>\r\nBDAT 6\r\nab\r\ncdBDAT 4 LAST\r\nef\r\nQUIT\r\n")
write("smtp_session", "auth", bytes([0xC7, 0xFF, 8]) + b"EHLO x\r\nSTARTTLS\r\nEHLO x\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nMAIL FROM:<alice@home.arpa>\r\nRCPT TO:<bob@elsewhere.test>\r\nDATA\r\nhi\r\n.\r\nAUTH LOGIN\r\n*\r\nETRN example.org\r\nQUIT\r\n")
write("smtp_session", "errors", bytes([0x00, 0x07, 0]) + b"HELO\r\nMAIL\r\nRCPT TO:<x>\r\nDATA\r\nBDAT x\r\nVRFY a\r\nNOOP\r\nRSET\r\nbare\nline\r\n" + b"X" * 1200 + b"\r\nQUIT\r\n")

write("smtp_reply", "ehlo", b"250-mx.test hi\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
write("smtp_reply", "greeting-and-errors", b"220 mx.test ESMTP\r\n451 4.3.0 try later\r\n550-5.1.1 no\r\n550 5.1.1 such user\r\ngarbage\r\n")
write("smtp_reply", "credentials", b"# relay\nme@isp.test:pa:ss\n")
write("smtp_reply", "auth-eq", b"250-x\r\n250 AUTH=PLAIN\r\n")
write("smtp_reply", "long-and-odd", b"250 " + b"x" * 996 + b"\r\n250-" + b"y" * 997 + b"\r\n250x\r\n354\n")
write("smtp_reply", "enhanced", b"550 5.1.1 no\r\n250 2.0.0 ok\r\n451 5.0.0 mismatch\r\n250-x\r\n250-SIZE 0\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n")

# smtp_client: byte 0 = recipients (low 3 bits) + all-or-nothing (8), byte
# 1 = DATA piece size - 1, bytes 2-3 = content length; content; replies.
def client(setup, piece, content, replies):
    return bytes([setup, piece]) + struct.pack(">H", len(content)) + content + replies
BODY = b"Subject: hi\r\n\r\n.dot\r\nbare\nlf and bare\rcr\r\n.\r\nend"
write("smtp_client", "delivered", client(3, 4, BODY, b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n250 ok\r\n354 go\r\n250 2.0.0 queued\r\n"))
write("smtp_client", "all-or-nothing", client(8 | 2, 0, BODY, b"250 ok\r\n250 ok\r\n452 4.5.3 too many\r\n"))
write("smtp_client", "odd-replies", client(2, 1, b".\n..\r\r\n", b"250 ok\r\n354 ?\r\n250 ok\r\n250 no 354\r\n"))
write("smtp_client", "mail-refused", client(5, 7, b"", b"421-4.3.2 going\r\n421 4.3.2 down\r\n"))

# ---- NUT (upsd replies to the UPS client) ---------------------------------
# A LIST VAR reply recorded from upsd 2.8.0 with dummy-ups, then the
# on-battery, low-battery and FSD polls, the errors upsd gives while its
# driver is gone, and the other replies the client reads.
nut_list = lambda vars: (b"BEGIN LIST VAR ups\n" + b"".join(
    b'VAR ups %s "%s"\n' % (n.encode(), v.encode()) for n, v in vars) + b"END LIST VAR ups\n")
nut_ol = nut_list([("battery.charge", "100"), ("battery.runtime", "1800"),
                   ("device.mfr", "Dummy Manufacturer"), ("driver.name", "dummy-ups"),
                   ("driver.parameter.mode", "dummy-once"), ("ups.status", "OL")])
write("nut_reply", "list-ol", nut_ol)
write("nut_reply", "outage", nut_ol
      + nut_list([("ups.status", "OB DISCHRG"), ("battery.charge", "42.5"), ("battery.runtime", "600")])
      + b"ERR DATA-STALE\nERR DRIVER-NOT-CONNECTED\n"
      + nut_list([("ups.status", "OB DISCHRG LB"), ("battery.charge", "9"), ("battery.runtime", "60")]))
write("nut_reply", "boot-low", nut_list([("ups.status", "OB"), ("battery.charge", "20")])
      + nut_list([("ups.status", "OL CHRG"), ("battery.charge", "21")]) * 14)
write("nut_reply", "fsd-and-ok", b"OK\nOK\nOK\nOK FSD-SET\n"
      + nut_list([("ups.status", "FSD OB LB")]) + b"OK Goodbye\nGoodbye...\n")
write("nut_reply", "escapes", b'VAR ups ups.id "say \\"hi\\" \\\\o/"\nVAR ups x ""\n'
      + nut_list([("ups.status", "WAIT")]) + b"ERR UNKNOWN-UPS\nBEGIN LIST VAR other\n")

# ---- SASL ----------------------------------------------------------------
write("sasl", "plain", b"AGFsaWNlAHMzY3JldA==")
write("sasl", "plain-authzid", b"YWxpY2UAYWxpY2UAczNjcmV0")
write("sasl", "login-user", b"YWxpY2U=")
write("sasl", "empty", b"=")
write("sasl", "bad", b"YWxp*2U=")

# spf_record: RFC 7208 records, as TXT data (length-prefixed strings) and as text.
write("spf_record", "appendix-a", b"v=spf1 mx/30 mx:example.org/30 a:%{d}//64 ptr -all")
write("spf_record", "include-redirect", b"v=spf1 -include:ip4._spf.%{d} ?exists:%{ir}.%{l1r+-}._spf.%{d2} redirect=example.org exp=explain._spf.%{d}")
write("spf_record", "ip", b"V=SPF1 ip4:192.0.2.0/24 ~ip6:2001:db8::/32 +all unknown-mod=%{h}%%%_%-")
write("spf_record", "txt-strings", b"\x07v=spf1 \x04-all")
write("spf_record", "bad", b"v=spf1 a:%{q} ip4:1.2.3/40 redirect=a redirect=b")


# ---- spool ---------------------------------------------------------------
def record(t, payload):
    length = struct.pack("<I", len(payload))
    crc = zlib.crc32(payload, zlib.crc32(length, zlib.crc32(bytes([t]))))
    return bytes([0xB5, t]) + length + struct.pack("<I", crc) + payload


def begin(id_, rcpts, sender="a@b.test", received=1_700_000_000):
    p = varint(id_) + varint(received) + pbytes(sender) + varint(len(rcpts)) + b"".join(pbytes(r) for r in rcpts)
    return 1, p


def body_rec(id_, data):
    return 2, struct.pack("<Q", id_) + data


def end_rec(id_, size):
    return 3, struct.pack("<QQ", id_, size)


def rcpt_rec(id_, index, outcome):
    return 4, varint(id_) + varint(index) + varint(outcome)


def retry_rec(id_, attempts, next_at, error):
    return 5, varint(id_) + varint(attempts) + varint(next_at) + pbytes(error)


recs = [begin(1001, ["u@home.arpa", "v@home.arpa"]), body_rec(1001, b"Subject: hi\r\n\r\nbody\r\n"),
        end_rec(1001, 21), rcpt_rec(1001, 0, 0), retry_rec(1001, 2, 1_700_000_600, "451 try later"),
        (6, struct.pack("<Q", 1001)), (7, struct.pack("<Q", 1001))]
for i, (t, p) in enumerate(recs):
    write("spool_record", f"framed-{t}", b"\0" + bytes([t]) + p)
    write("spool_record", f"raw-{t}", b"\x01" + record(t, p))

seg1 = b"".join(record(*r) for r in [
    begin(1001, ["u@home.arpa", "v@home.arpa"]), body_rec(1001, b"Subject: hi\r\n\r\n"),
    begin(1002, ["w@home.arpa"]), body_rec(1002, b"other\r\n"), body_rec(1001, b"body\r\n"),
    end_rec(1001, 21), end_rec(1002, 7)])
seg2 = b"".join(record(*r) for r in [
    rcpt_rec(1001, 0, 0), retry_rec(1002, 1, 1_700_000_600, "451 try later"), (7, struct.pack("<Q", 1002)),
    begin(1003, ["x@home.arpa"]), body_rec(1003, b"unended")])
write("spool_recovery", "two-segments", b"\0" + seg1 + b"%SEG" + seg2)
write("spool_recovery", "torn-tail", b"\x01" + seg1 + seg2[:-5])
write("spool_recovery", "delete", b"\0" + seg1 + b"%SEG" + record(6, struct.pack("<Q", 1001)) + record(4, varint(1002) + varint(0) + varint(1)))

# ---- control -------------------------------------------------------------
# type byte: 0/1 init request/response, 2/3 dns, 4/5 mail.
write("control", "init-status", b"\x00" + varint(0))
write("control", "init-shutdown", b"\x00" + varint(2) + varint(1))
write("control", "init-log", b"\x01" + varint(1) + varint(2) + pbytes("boot") + pbytes("dns started"))
write("control", "dns-prime", b"\x02" + varint(1))
write("control", "dns-prime-started", b"\x03" + varint(1) + varint(42))
write("control", "mail-delete", b"\x04" + varint(1) + varint(1001))
write("control", "mail-summary", b"\x05" + varint(3) + varint(2) + varint(4096))
write("control", "mail-error", b"\x05" + varint(2) + pbytes("no such message"))

# ---- config --------------------------------------------------------------
with open(os.path.join(ROOT, "rootfs-overlay", "etc", "pocobelle.toml"), "rb") as f:
    write("config", "shipped-example", f.read())
write("config", "empty", b"")
write("config", "dns-hosts", b'[system]\nhostname = "box"\n\n[dns]\nlocal_domain = "home.arpa"\ncache_bytes = 65536\n\n[[dns.hosts]]\nname = "nas"\naddrs = ["192.168.1.10", "fd00::10"]\n')
write("config", "typo", b'[system]\nhostname = "box"\n\n[log]\nlevle = "debug"\n')
write("config", "syntax", b'[log]\nlevel = "info\n')

# ---- SNTP ----------------------------------------------------------------
t1 = struct.pack(">Q", ((1_700_000_000 + 2_208_988_800) << 32) | 0x80000000)
t4 = struct.pack(">Q", ((1_700_000_000 + 2_208_988_800) << 32) | 0x90000000)
reply = bytearray(48)
reply[0] = (4 << 3) | 4
reply[1] = 2
reply[12:16] = b"LOCL"
reply[24:32] = t1
reply[32:40] = struct.pack(">Q", ((1_700_000_005 + 2_208_988_800) << 32) | 0x81000000)
reply[40:48] = struct.pack(">Q", ((1_700_000_005 + 2_208_988_800) << 32) | 0x82000000)
write("sntp", "good", t1 + t4 + bytes(reply))
kod = bytearray(reply)
kod[1] = 0
kod[12:16] = b"RATE"
write("sntp", "kiss-of-death", t1 + t4 + bytes(kod))
write("sntp", "server-names", t1 + t4 + b"pool.ntp.org:123")
write("sntp", "state-line", t1 + t4 + b"192.0.2.1 -15 1700000000\n")
write("sntp", "v6-server", t1 + t4 + b"[2001:db8::123]:123")


# ---- netlink (native endian: little on the hosts and boards) ---------------
def nlmsg(kind, seq, payload, flags=0):
    m = struct.pack("<IHHII", 16 + len(payload), kind, flags, seq, 0) + payload
    return m + b"\0" * (-len(m) % 4)


def nlattr(kind, value):
    a = struct.pack("<HH", 4 + len(value), kind) + value
    return a + b"\0" * (-len(a) % 4)


ack = nlmsg(2, 5, struct.pack("<i", 0) + b"\0" * 16)
write("netlink", "ack", struct.pack(">I", 5) + ack)
write("netlink", "eexist", struct.pack(">I", 5) + nlmsg(2, 5, struct.pack("<i", -17) + b"\0" * 16))
v6 = bytes.fromhex("fec00000000000000000000000000015")
dump = nlmsg(20, 9, bytes([10, 64, 0, 0]) + struct.pack("<I", 2) + nlattr(1, v6) + nlattr(8, struct.pack("<I", 0x40)))
dump += nlmsg(20, 9, bytes([2, 24, 0x80, 0]) + struct.pack("<I", 2) + nlattr(2, bytes([10, 0, 2, 15])) + nlattr(1, bytes([10, 0, 2, 15])))
dump += nlmsg(3, 9, struct.pack("<I", 0))
write("netlink", "addr-dump", struct.pack(">I", 9) + dump)
write("netlink", "addr-dump-cut", struct.pack(">I", 9) + dump[:-20])

# ---- bmap (flash) ----------------------------------------------------------
# The golden files bmaptool 3.6 made for the flash unit tests; mode byte 0
# (checksum made right, already is) and 1 (as is).
for g in ("golden-1m", "golden-odd"):
    with open(os.path.join(ROOT, "firmware/src/flash/testdata", g + ".bmap"), "rb") as f:
        text = f.read()
    write("bmap", g + "-fixed", b"\0" + text)
    write("bmap", g + "-asis", b"\1" + text)

# ---- DKIM and DMARC (mail::policy) -------------------------------------
write("dkim_signature", "rfc8463-ed25519",
      "v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
      " d=football.example.com; i=@football.example.com;\r\n"
      " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
      " subject : date : message-id : from : subject : date;\r\n"
      " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
      " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
      " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==")
write("dkim_signature", "simple-l-x",
      "v=1; a=rsa-sha256; d=example.com; s=sel; h=From:To; bh=YWJj; "
      "b=ZGVm; l=10; t=5; x=6; i=joe@mail.example.com")
write("dkim_signature", "sha1", "v=1; a=rsa-sha1; d=a.example; s=s; h=from; bh=YQ==; b=YQ==")
write("dkim_signature", "duplicate", "v=1; v=1")
write("dkim_key", "rsa1024",
      "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6"
      "NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/"
      "8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/"
      "K4w3QIDAQAB")
write("dkim_key", "ed25519", "v=DKIM1; k=ed25519; t=y:s; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
write("dkim_key", "revoked", "v=DKIM1; p=")
write("dkim_key", "service", "v=DKIM1; h=sha256; s=email; n=note; p=YQ==")
write("dmarc_record", "reject", "v=DMARC1; p=reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=mailto:d@example.com")
write("dmarc_record", "psd", "v=DMARC1; p=none; psd=y")
write("dmarc_record", "from-field", "From: \"Joe\" <joe@Mail.Example.COM>\r\nTo: x@y\r\n")
write("dmarc_record", "authres", " (c) mx.home.example 1; spf=pass")

# ---- greylist snapshot (mail policy) ---------------------------------------
# Mode byte 0: secret and records, magic and checksum made right (the
# current magic, PBGREY2); 1: a whole file as written (PBGREY2, or the
# previous PBGREY1 without kind 4; 16-byte secret, records of kind u8
# (1 waiting, 2 passed, 3 allowed network, 4 known domain), digest u64,
# time u64, then FNV-1a 64 of all that).
grey_v1_body = bytes(range(16))
grey_v1_body += struct.pack(">BQQ", 1, 0x1122334455667788, 1_800_000_000)
grey_v1_body += struct.pack(">BQQ", 2, 0x99AABBCCDDEEFF00, 1_799_999_000)
grey_v1_body += struct.pack(">BQQ", 3, 0x0123456789ABCDEF, 1_799_999_500)
grey_body = grey_v1_body + struct.pack(">BQQ", 4, 0x0F1E2D3C4B5A6978, 1_799_999_000)
write("greylist_snapshot", "body", b"\0" + grey_body)
write("greylist_snapshot", "body-empty", b"\0" + bytes(16))
write("greylist_snapshot", "body-bad-kind", b"\0" + bytes(16) + struct.pack(">BQQ", 7, 1, 1))
grey_file = b"PBGREY2\n" + grey_body
write("greylist_snapshot", "file", b"\1" + grey_file + struct.pack(">Q", fnv1a64(grey_file)))
write("greylist_snapshot", "file-bad-sum", b"\1" + grey_file + struct.pack(">Q", 0))
grey_v1 = b"PBGREY1\n" + grey_v1_body
write("greylist_snapshot", "file-v1", b"\1" + grey_v1 + struct.pack(">Q", fnv1a64(grey_v1)))
# A known domain in a version 1 file: refused.
grey_v1_kind4 = b"PBGREY1\n" + grey_body
write("greylist_snapshot", "file-v1-kind4", b"\1" + grey_v1_kind4 + struct.pack(">Q", fnv1a64(grey_v1_kind4)))
