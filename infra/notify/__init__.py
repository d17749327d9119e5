"""Notifications that reach people: webhook and email channels, driven from the logs."""
