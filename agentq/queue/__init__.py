"""The queue protocol on a project's .agent-queue/ folder: vet, claim, finish, records,
routing, watching, the janitor.
"""
