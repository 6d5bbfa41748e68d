"""The shared mechanism: masks, exact integer bookkeeping, schedules and the update loop."""
