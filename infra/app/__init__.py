"""Process assemblies (`serve`, `control`, `agent`) and their one shared life cycle."""
