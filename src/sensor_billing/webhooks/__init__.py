"""Stripe webhooks, processed exactly once: verify, record, apply, in one transaction."""
