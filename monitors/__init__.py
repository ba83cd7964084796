"""Monitors: event features, drift/performance/safety monitors, scheduler, alerts, retraining.

Not built yet: this package lands with the monitoring milestone (APScheduler in one leader
process, evidently for drift, webhooks with private-address checks, a retrain policy that
queues jobs). Nothing imports it today.
"""
