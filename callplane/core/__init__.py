"""The pure core: deterministic state machines with no sockets, clock, database or asyncio."""
