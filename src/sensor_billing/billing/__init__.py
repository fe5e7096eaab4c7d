"""Billing state kept current from Stripe: customer links, subscriptions, invoices."""
