"""The worker's actors: one module each, every one an `async def run` in the worker's task
group, talking through anyio memory object streams and the events in `messages`."""
