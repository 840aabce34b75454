"""Vocabulary and utilities: errors, types, seeding, atomic I/O, import by path, interrupts, quiet."""
