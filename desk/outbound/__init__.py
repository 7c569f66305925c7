"""What leaves the desk: export bundles for the air gap and replies to sources."""
