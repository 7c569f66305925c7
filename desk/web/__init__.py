"""HTTP: request plumbing shared by both interfaces, and one blueprint per interface."""
