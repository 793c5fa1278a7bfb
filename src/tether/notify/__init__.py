"""Notifications to humans (webhooks), off the decision path."""

from tether.notify.webhook import WebhookNotifier

__all__ = ["WebhookNotifier"]
