"""Training a model: the shared preparation (setup), the plan, the callbacks, the fit (trainer: train, dry_run)."""
