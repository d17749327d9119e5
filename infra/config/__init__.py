"""Process settings: the TRUNKPLANE_* variables, read and checked once at start."""
