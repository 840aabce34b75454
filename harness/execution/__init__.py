"""Running: plan, worker, backends, run lock, the experiment orchestrator, the in-memory API."""
