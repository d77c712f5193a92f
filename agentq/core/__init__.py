"""The ground floor: errors, durations, atomic writes, crash points, secrets, locks, the clock,
the event log.
"""
