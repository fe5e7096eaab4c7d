"""The one place that talks to Stripe: the client factory and Stripe's errors mapped to ours."""
