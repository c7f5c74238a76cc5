"""Bytes passed both ways between two connections until either side closes, for the tests'
proxies (the TLS fronts, the forwarder into a network namespace)."""

from __future__ import annotations

import asyncio


async def relay(
    r1: asyncio.StreamReader, w1: asyncio.StreamWriter, r2: asyncio.StreamReader, w2: asyncio.StreamWriter
) -> None:
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(1 << 16):
                dst.write(data)
                await dst.drain()
        except OSError:  # a reset, a TLS error (ssl.SSLError is one): that side is done
            pass
        finally:
            dst.close()

    await asyncio.gather(copy(r1, w2), copy(r2, w1))
