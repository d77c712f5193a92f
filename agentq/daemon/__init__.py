"""The daemon: the main loop and its collaborators (scanning, dispatch, recovery, wiring,
notify, view).
"""
