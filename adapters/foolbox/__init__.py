"""Foolbox adapter."""
