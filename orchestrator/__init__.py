"""orchestrator: a Corezoid-style process engine for Twilio SMS, MMS and voice calls."""

__version__ = "0.1.0"
