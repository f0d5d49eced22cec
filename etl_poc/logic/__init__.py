"""Business logic: one engine-free spec and (from the engine issues on) two mirrored engines."""
