"""The agent as a signalling B2BUA between the PBX and the providers (issue 12)."""
