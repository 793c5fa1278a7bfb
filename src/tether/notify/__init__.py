"""Notifications to humans (webhooks), off the decision path."""

from tether.notify.webhook import WebhookNotifier, webhook_secret

__all__ = ["WebhookNotifier", "webhook_secret"]
