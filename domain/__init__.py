"""The command side of trunkplane: aggregates, value objects, events and rules."""
