#!/usr/bin/env python3
"""The household's DNS probe: one UDP query every --interval seconds to the
board, cycling through --names (A queries), each with its own ID; a query
unanswered after --timeout seconds counts as a failure. Every query is one
JSON line: send time, name, latency in ms (null when it failed), rcode.

    probe.py --server 10.77.0.2:53 --bind 10.77.0.1 --names a,b,c --log FILE
"""
import argparse
import asyncio
import json
import random
import struct
import time


def query(qid, name):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack("!HH", 1, 1)


class Proto(asyncio.DatagramProtocol):
    def __init__(self):
        self.waiting = {}

    def datagram_received(self, data, addr):
        if len(data) >= 4:
            qid = struct.unpack("!H", data[:2])[0]
            fut = self.waiting.pop(qid, None)
            if fut and not fut.done():
                fut.set_result((time.monotonic(), data[3] & 0x0F))


async def one(proto, transport, qid, name, timeout, log):
    fut = asyncio.get_running_loop().create_future()
    proto.waiting[qid] = fut
    t0, wall = time.monotonic(), time.time()
    transport.sendto(query(qid, name))
    try:
        t1, rcode = await asyncio.wait_for(fut, timeout)
        rec = {"t": wall, "name": name, "ms": round((t1 - t0) * 1000, 2), "rcode": rcode}
    except asyncio.TimeoutError:
        proto.waiting.pop(qid, None)
        rec = {"t": wall, "name": name, "ms": None, "rcode": None}
    log.write(json.dumps(rec) + "\n")


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--names", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    host, port = args.server.rsplit(":", 1)
    names = args.names.split(",")
    log = open(args.log, "a", buffering=1)
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Proto, local_addr=(args.bind, 0), remote_addr=(host, int(port)))
    qid, i = random.randrange(65536), 0
    next_t = time.monotonic()
    while True:
        qid = (qid + 1) & 0xFFFF
        asyncio.ensure_future(one(proto, transport, qid, names[i % len(names)], args.timeout, log))
        i += 1
        next_t += args.interval
        await asyncio.sleep(max(0, next_t - time.monotonic()))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
