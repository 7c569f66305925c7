"""Running and administering a desk: the command line, serving, tor, doctor, demo."""
