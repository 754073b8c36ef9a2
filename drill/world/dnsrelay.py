#!/usr/bin/env python3
"""The drill's cold upstream: a UDP+TCP DNS relay in front of nsd.

The first lookup of each name (any type) is answered only after a delay,
as a cold recursive resolver far away would: names whose labels match
--never-re are never answered, those matching --slow-re after --slow
seconds, every other name after --delay seconds. A query for a name that
arrives while its first lookup is still being held is held until the same
moment; after it, the name is warm and answered at once. Every query is
logged as a JSON line (time, transport, name, how long it was held).

    dnsrelay.py --listen 10.77.0.1:53 --upstream 127.0.0.1:5300 --log FILE
"""
import argparse
import asyncio
import json
import re
import socket
import struct
import sys
import time


def qname(msg):
    """The question's name (lower case), or None."""
    try:
        pos, labels = 12, []
        while True:
            n = msg[pos]
            if n == 0:
                break
            if n & 0xC0:
                return None
            labels.append(msg[pos + 1:pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        return ".".join(labels).lower() + "."
    except IndexError:
        return None


class Relay:
    def __init__(self, args):
        self.args = args
        self.never = re.compile(args.never_re) if args.never_re else None
        self.slow = re.compile(args.slow_re) if args.slow_re else None
        self.warm_at = {}  # name -> monotonic time it becomes warm (inf: never)
        self.up = (args.upstream.rsplit(":", 1)[0], int(args.upstream.rsplit(":", 1)[1]))
        self.log = open(args.log, "a", buffering=1) if args.log else None

    def hold_for(self, name):
        now = time.monotonic()
        if name is None:
            return 0.0
        if name not in self.warm_at:
            if self.never and self.never.search(name):
                self.warm_at[name] = float("inf")
            elif self.slow and self.slow.search(name):
                self.warm_at[name] = now + self.args.slow
            else:
                self.warm_at[name] = now + self.args.delay
        return self.warm_at[name] - now

    async def ask(self, query):
        """Forward one query to nsd over UDP (loopback), return the answer."""
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            await loop.sock_connect(s, self.up)
            await loop.sock_sendall(s, query)
            return await asyncio.wait_for(loop.sock_recv(s, 65535), 2.0)
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            s.close()

    async def handle(self, query, transport):
        name = qname(query)
        hold = self.hold_for(name)
        entry = {"t": time.time(), "tr": transport, "name": name, "hold": None if hold == float("inf") else round(max(hold, 0), 3)}
        if self.log:
            self.log.write(json.dumps(entry) + "\n")
        if hold == float("inf"):
            return None
        if hold > 0:
            await asyncio.sleep(hold)
        ans = await self.ask(query)
        if self.log:
            self.log.write(json.dumps({"t": time.time(), "tr": transport, "name": name, "answered": ans is not None,
                                       "asked": entry["t"]}) + "\n")
        return ans


class Udp(asyncio.DatagramProtocol):
    def __init__(self, relay):
        self.relay = relay

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        asyncio.ensure_future(self.answer(data, addr))

    async def answer(self, data, addr):
        ans = await self.relay.handle(data, "udp")
        if ans:
            self.transport.sendto(ans, addr)


async def tcp_client(relay, reader, writer):
    lock = asyncio.Lock()

    async def one(q):
        ans = await relay.handle(q, "tcp")
        if ans:
            async with lock:
                writer.write(struct.pack("!H", len(ans)) + ans)
                await writer.drain()

    try:
        while True:
            hdr = await reader.readexactly(2)
            q = await reader.readexactly(struct.unpack("!H", hdr)[0])
            asyncio.ensure_future(one(q))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--delay", type=float, default=3.0)
    p.add_argument("--slow", type=float, default=12.0)
    p.add_argument("--slow-re", default=r"(^|\.)slow[^.]*\.|(^|\.)s3\.test\.$")
    p.add_argument("--never-re", default=r"(^|\.)never[^.]*\.|(^|\.)s4\.test\.$")
    p.add_argument("--log")
    args = p.parse_args()
    relay = Relay(args)
    host, port = args.listen.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Udp(relay), local_addr=(host, int(port)))
    server = await asyncio.start_server(lambda r, w: tcp_client(relay, r, w), host, int(port))
    print(f"dnsrelay: {args.listen} -> {args.upstream}, delay {args.delay}s, slow {args.slow}s", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
