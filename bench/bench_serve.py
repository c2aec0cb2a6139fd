"""`llmscisci serve` under load: 8 concurrent clients against 8 requests sent one by one.

A real server (`llmscisci serve builtin:tiny`, CPU) on a free loopback port; the same 8
requests (greedy, 32 new tokens) are sent sequentially and then all at once, in interleaved
rounds. The figure is the ratio of requests per second, concurrent / sequential: what batching
the requests that arrive together buys.
"""

from __future__ import annotations

import asyncio
import statistics
import time


def _round(url: str, concurrent: bool, n: int = 8) -> float:
    import httpx

    body = {
        "messages": [{"role": "user", "content": "Label this section."}],
        "max_tokens": 32,
        "temperature": 0,
    }

    async def main():
        async with httpx.AsyncClient(timeout=120) as client:
            if concurrent:
                responses = await asyncio.gather(
                    *[client.post(f"{url}/chat/completions", json=body) for _ in range(n)]
                )
            else:
                responses = [
                    await client.post(f"{url}/chat/completions", json=body) for _ in range(n)
                ]
        assert all(r.status_code == 200 for r in responses)

    started = time.perf_counter()
    asyncio.run(main())
    return n / (time.perf_counter() - started)


def run(repeats: int = 5) -> dict[str, float]:
    from tests.serve_helpers import start, stop

    server = start()
    try:
        _round(server.url, True)  # warm up
        sequential, concurrent = [], []
        for _ in range(repeats):
            sequential.append(_round(server.url, False))
            concurrent.append(_round(server.url, True))
    finally:
        stop(server)
    seq, con = statistics.median(sequential), statistics.median(concurrent)
    return {
        "serve_sequential_requests_per_s": round(seq, 2),
        "serve_concurrent_requests_per_s": round(con, 2),
        "serve_concurrent_vs_sequential": round(con / seq, 2),
    }


if __name__ == "__main__":
    print(run())
