"""Usage metering: windows, the ledger, reporting to Stripe Billing Meters exactly once."""
