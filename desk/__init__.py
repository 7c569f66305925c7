"""desk: an anonymous evidence submission desk."""
