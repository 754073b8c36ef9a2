#!/usr/bin/env python3
"""The drill's SMTP sinks: the laptop (the household's main mail server) and
the senders' own MX (where a bounce or delay DSN would arrive).

It listens only from --start-at (epoch seconds) on: before that nothing
listens on the address, so connections are refused, as a laptop that is
still off. Every message accepted is logged as one JSON line: time, the
peer, MAIL FROM, RCPT TO, size, its X-Drill-Id header (the sender's id),
whether it is a DSN (multipart/report; report-type=delivery-status) and its
Action fields. Speaks ESMTP with PIPELINING, 8BITMIME and SIZE (what
Postfix's smtp-sink offers by default, less CHUNKING).

    sink.py --listen 10.77.0.20:25 --start-at EPOCH --log FILE --name laptop
"""
import argparse
import asyncio
import json
import re
import sys
import time

ID_RE = re.compile(rb"^X-Drill-Id:\s*(\S+)", re.I | re.M)
ACTION_RE = re.compile(rb"^Action:\s*(\S+)", re.I | re.M)


class Sink:
    def __init__(self, args):
        self.args = args
        self.log = open(args.log, "a", buffering=1)
        self.count = 0

    async def session(self, reader, writer):
        peer = writer.get_extra_info("peername")
        w = writer.write
        w(b"220 %s ESMTP drill sink\r\n" % self.args.name.encode())
        mail, rcpts = None, []
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.strip().upper()
                if cmd.startswith(b"EHLO"):
                    w(b"250-%s\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n250 ENHANCEDSTATUSCODES\r\n" % self.args.name.encode())
                elif cmd.startswith(b"HELO"):
                    w(b"250 %s\r\n" % self.args.name.encode())
                elif cmd.startswith(b"MAIL FROM:"):
                    mail, rcpts = line.strip()[10:].decode("utf-8", "replace"), []
                    w(b"250 2.1.0 Ok\r\n")
                elif cmd.startswith(b"RCPT TO:"):
                    rcpts.append(line.strip()[8:].decode("utf-8", "replace"))
                    w(b"250 2.1.5 Ok\r\n")
                elif cmd == b"DATA":
                    if not rcpts:
                        w(b"503 5.5.1 No recipients\r\n")
                        continue
                    w(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    await writer.drain()
                    head, size, in_head = bytearray(), 0, True
                    body_tail = bytearray()
                    while True:
                        l = await reader.readline()
                        if not l:
                            return
                        if l == b".\r\n":
                            break
                        size += len(l)
                        if in_head:
                            if l in (b"\r\n", b"\n"):
                                in_head = False
                            else:
                                head += l
                        if len(body_tail) < 65536:
                            body_tail += l
                    self.count += 1
                    m = ID_RE.search(bytes(head))
                    ct = bytes(head).lower()
                    dsn = b"multipart/report" in ct and b"delivery-status" in ct
                    # The DSN's third part carries the original headers, with its X-Drill-Id.
                    if m is None and dsn:
                        m = ID_RE.search(bytes(body_tail))
                    rec = {"t": time.time(), "sink": self.args.name, "peer": peer[0], "from": mail, "rcpt": rcpts,
                           "size": size, "id": m.group(1).decode() if m else None, "dsn": dsn,
                           "actions": [a.decode() for a in ACTION_RE.findall(bytes(body_tail))] if dsn else []}
                    self.log.write(json.dumps(rec) + "\n")
                    w(b"250 2.0.0 Ok: queued as %d\r\n" % self.count)
                    mail, rcpts = None, []
                elif cmd == b"RSET":
                    mail, rcpts = None, []
                    w(b"250 2.0.0 Ok\r\n")
                elif cmd == b"NOOP":
                    w(b"250 2.0.0 Ok\r\n")
                elif cmd == b"QUIT":
                    w(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    return
                else:
                    w(b"502 5.5.2 Error: command not recognized\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--start-at", type=float, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--name", default="sink")
    args = p.parse_args()
    wait = args.start_at - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    host, port = args.listen.rsplit(":", 1)
    sink = Sink(args)
    server = await asyncio.start_server(sink.session, host, int(port), limit=1 << 20)
    with open(args.log, "a") as f:
        f.write(json.dumps({"t": time.time(), "sink": args.name, "event": "listening"}) + "\n")
    print(f"sink {args.name}: listening on {args.listen}", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
