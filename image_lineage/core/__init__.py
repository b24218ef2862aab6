"""Shared by every layer: the project's error type, the names it logs under, and its configuration.

Imports nothing of the project and nothing outside the standard library.
"""
