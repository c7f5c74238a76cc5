"""A TCP forwarder: `pdpp-orch dev --listen ADDR` puts Temporal's frontend on ADDR this way.

The dev server cannot bind a non-loopback address itself (with `--ip ADDR` the 1.32 dev server
fails its own internal calls, which go to 127.0.0.1), and `--ip 0.0.0.0` would open its
internal services (history, matching, …) to the network too. So Temporal stays on loopback
and only its frontend is forwarded, byte for byte (gRPC over HTTP/2 passes unchanged)."""

from __future__ import annotations

import asyncio
import contextlib

CHUNK = 1 << 16


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.close()


async def serve(host: str, port: int, target_host: str, target_port: int) -> asyncio.Server:
    """Forward every connection to `host`:`port` to `target_host`:`target_port`."""

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(target_host, target_port)
        except OSError:
            w.close()
            return
        await asyncio.gather(_copy(r, w2), _copy(r2, w))

    return await asyncio.start_server(pipe, host, port)
