"""Use cases: run a pipeline, approve, reject, promote, roll back, report. The CLI only calls these."""
