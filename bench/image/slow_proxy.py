#!/usr/bin/env python3
"""A TCP proxy that makes a loopback registry look far away, for pull_bench.py: whatever the
client sends (a request) reaches the registry LATENCY_MS later, and each response is paced to
RATE_MB_S (10^6 bytes a second) from its first byte, as a CDN caps each download.
Usage: slow_proxy.py UPSTREAM_PORT LATENCY_MS RATE_MB_S; prints its own port on stdout."""
import asyncio
import sys

UPSTREAM = int(sys.argv[1])
LATENCY = float(sys.argv[2]) / 1000
RATE = float(sys.argv[3]) * 1e6


class Link:
    """One client connection: its requests delayed, each response paced from its first byte."""

    def __init__(self) -> None:
        self.due = 0.0  # when the response bytes so far have gone out at RATE; 0: a new response

    async def requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            await asyncio.sleep(LATENCY)
            self.due = 0.0
            writer.write(data)
            await writer.drain()
        writer.close()

    async def responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while data := await reader.read(1 << 16):
            self.due = (self.due or loop.time()) + len(data) / RATE
            await asyncio.sleep(self.due - loop.time())
            writer.write(data)
            await writer.drain()
        writer.close()


async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", UPSTREAM)
        link = Link()
        await asyncio.gather(link.requests(client_r, up_w), link.responses(up_r, client_w))
    except ConnectionError:
        pass
    finally:
        client_w.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
