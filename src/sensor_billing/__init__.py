"""sensor-billing: bills a temperature-monitoring SaaS through Stripe, exactly once."""

__all__ = ["__version__"]

__version__ = "0.1.0"
