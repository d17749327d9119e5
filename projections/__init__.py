"""Views built from the event log: history, and (with the projections issue) stored views."""
