"""What both sides of the air gap must agree on: keys, formats, derivations.

This package imports neither Flask nor ``desk``: the offline review console loads it alone.
"""
