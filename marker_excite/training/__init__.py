"""Training a model: the plan, the callbacks, the fit (train, dry_run)."""
