"""``python -m tests.fakeupstream --port N``: the fake upstream as a process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading

from tests.fakeupstream.server import FakeUpstream


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible upstream for Parley's tests and benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--tokens", type=int, default=None, help="deltas per reply (default 12)")
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--require-key", default=None)
    args = parser.parse_args(argv)
    server = FakeUpstream(args.host, args.port)
    server.always(
        tokens=args.tokens,
        token_delay=args.token_delay,
        first_token_delay=args.first_token_delay,
    )
    server.require_key = args.require_key

    class _Announce(threading.Event):
        def set(self):
            print(f"fake upstream listening on {server.base_url}", flush=True)
            super().set()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(_Announce()))


if __name__ == "__main__":
    main()
