"""desk-review: the offline review console. Imports crypto/ and its own modules, never the
online desk's apps, and needs no network."""
