"""N streaming requests started at once through httpx alone, in one process: no server at all.

    python -m bench.floor_httpx --base-url http://127.0.0.1:PORT/v1 --replies 200

Part of bench/floor.py (run with a Parley installation's environment, for the settings).
Starts N chat completions at the same moment on one event loop with the upstream client as
Parley configures it (chat.upstream.client's pooled clients, connections opened by one request before),
reads each to its first body chunk and closes it, and prints the times to that first chunk
as JSON. What this adds to the upstream's own time to first token, any relay built on
httpx in one process pays before doing anything of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.clients import prompt
from bench.harness import MODEL_ID

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


async def _first_chunk(base_url: str, content: str, *, whole: bool = False) -> float:
    from chat.upstream import client as upstream_client

    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": content}], "stream": True}
    started = time.perf_counter()
    first = float("nan")
    with upstream_client._lease() as client:
        request = client.build_request("POST", base_url + "/chat/completions", json=body)
        response = await client.send(request, stream=True)
        try:
            async for _chunk in response.aiter_raw():
                if first != first:
                    first = time.perf_counter() - started
                if not whole:
                    break
        finally:
            await response.aclose()
    return first


async def _run(base_url: str, replies: int, content: str) -> list[float]:
    # Open the pool's connections first, as a server that has been up for a while has them
    # (read whole, so each goes back to the pool; a response closed early closes its connection).
    warm = prompt(5, 0, "floor-warm-up")
    await asyncio.gather(*(_first_chunk(base_url, warm, whole=True) for _ in range(replies)))
    return list(await asyncio.gather(*(_first_chunk(base_url, content) for _ in range(replies))))


def main(argv=None) -> int:
    import django

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--replies", type=int, default=200)
    parser.add_argument("--content", default=prompt(200, 0.02, "floor-httpx"))
    args = parser.parse_args(argv)
    django.setup()
    print(json.dumps(asyncio.run(_run(args.base_url.rstrip("/"), args.replies, args.content))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
