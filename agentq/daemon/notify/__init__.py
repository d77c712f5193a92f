"""Notifications: which events are worth one, coalescing, delivery to webhooks and Apprise."""
