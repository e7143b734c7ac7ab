"""Quickstart: declare queues, push jobs, run a worker until they are done.

    python examples/quickstart.py

Uses CHANCY_DSN when set, else an embedded PostgreSQL in ./.chancy-pgdata.
"""

import anyio
import tasks

from chancy import Chancy, Queue, Worker


async def main() -> None:
    async with Chancy() as chancy:
        await chancy.migrate()
        await chancy.declare(Queue("default", concurrency=2))
        await chancy.declare(Queue("io", concurrency=10, executor=Chancy.Executor.Async))

        refs = [await chancy.push(tasks.greet.job.with_kwargs(name=n)) for n in ("Ada", "Alan")]
        refs.append(await chancy.push(tasks.fetch.job.with_kwargs(url="https://example.com")))

        async with Worker(chancy, register_signal_handlers=False):
            for ref in refs:
                job = await chancy.wait_for_job(ref, timeout=60)
                print(f"{job.func} -> {job.state.value} after {job.attempts} attempt(s)")


if __name__ == "__main__":
    anyio.run(main)
