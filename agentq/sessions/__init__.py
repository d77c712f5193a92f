"""The pool of agent sessions in tmux: a pure state machine per slot and the executor that
applies it.
"""
