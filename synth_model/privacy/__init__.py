"""Privacy safeguards applied before training and measured after generation (PII replacement, replay checks)."""
