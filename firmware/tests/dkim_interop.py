#!/usr/bin/python3
# DKIM interop peer for tests/dkim_interop.rs: dkimpy (Debian's
# python3-dkim, installed by `make setup`), a DKIM implementation no one
# here wrote. Run with the system's /usr/bin/python3 (dist-packages).
#
#   dkim_interop.py verify RECORDS_JSON < message    prints pass or fail
#   dkim_interop.py sign SELECTOR DOMAIN ALG CANON KEY < message
#       prints the DKIM-Signature field; ALG rsa-sha256 (KEY: a PEM file)
#       or ed25519-sha256 (KEY: the base64 32-octet seed); CANON h/b.
# Key records come from RECORDS_JSON ({"sel._domainkey.dom": "v=DKIM1;..."})
# through dkimpy's dnsfunc: nothing is looked up in DNS.
import json
import sys

import dkim

mode = sys.argv[1]
message = sys.stdin.buffer.read()
if mode == "verify":
    records = json.loads(sys.argv[2])

    def dnsfunc(name, timeout=5):
        record = records.get(name.decode().rstrip(".").lower())
        return record.encode() if record is not None else None

    print("pass" if dkim.verify(message, dnsfunc=dnsfunc, minkey=1024) else "fail")
elif mode == "sign":
    selector, domain, alg, canon, key = sys.argv[2:7]
    if alg == "rsa-sha256":
        with open(key, "rb") as f:
            privkey = f.read()
    else:
        privkey = key.encode()
    h, b = canon.split("/")
    field = dkim.sign(
        message,
        selector.encode(),
        domain.encode(),
        privkey,
        canonicalize=(h.encode(), b.encode()),
        signature_algorithm=alg.encode(),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
    )
    sys.stdout.buffer.write(field)
else:
    sys.exit("usage: dkim_interop.py verify|sign ...")
