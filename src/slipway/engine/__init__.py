"""The deployment engine: the pure planner and the runner that drives plans through ports."""
