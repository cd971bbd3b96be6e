"""Collectors: each measures one kind of number and says where it came from."""
