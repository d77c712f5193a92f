"""Accounts: the book (active, exhausted until, holds), the swap planner, the switcher, shared-
state links.
"""
