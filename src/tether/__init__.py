"""tether: request-time least privilege for AI agents."""

__version__ = "0.1.0"
