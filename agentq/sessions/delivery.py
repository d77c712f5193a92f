"""What is typed into an agent session, and how the screen shows that it arrived (pure).

The prompt is a one-line header (task, project, attempt) and the task body, pasted as
one bracketed paste. Delivery is verified on the pane: the paste must show in the live
input line (``❯`` + U+00A0) before Enter is sent, and the submitted prompt is echoed as a
past prompt (``❯`` + a normal space), which tells a new turn from an earlier one.
"""

from __future__ import annotations

from agentq.agents.classify import pending_input

#: How many non-blank pane lines a failure footer quotes.
TAIL_LINES = 15
#: What a task resumed on another account is told (its original prompt is in the session).
CONTINUE_PROMPT = (
    "The usage limit interrupted your previous turn; the session now runs on another "
    "account. Continue the task from where you stopped."
)
#: Foreground programs that mean "the agent exited; the pane is at its shell prompt".
SHELLS = frozenset({"bash", "zsh", "sh", "fish", "dash", "ksh"})
LIVE_INPUT = "❯\u00a0"
ECHO = "❯ "
#: The glyphs Claude Code's status line starts with: it animates (glyph, timer, token count)
#: while nothing else moves, so it never counts as progress.
STATUS_GLYPHS = frozenset("·✢*✶✻✽✳∗")


def prompt_text(name: str, project: str, attempt: int, body: str) -> str:
    """What is typed into the agent: a one-line header (task, project, attempt) and the body."""
    header = f"[agentq task {name} · project {project} · attempt {attempt}]"
    return f"{header}\n\n{body}"


def first_line(text: str) -> str:
    """The first line of a prompt: what the agent's ``UserPromptSubmit`` payload starts with."""
    return text.split("\n", 1)[0]


def last_echo(screen: str) -> str:
    """The last past-prompt echo line on screen (``❯`` + normal space), or ''."""
    for line in reversed(screen.splitlines()):
        if line.startswith(ECHO):
            return line
    return ""


def has_pending_input(screen: str) -> bool:
    """Whether the live input line (``❯`` + U+00A0) holds text waiting for Enter.

    Claude Code 2.1.332's placeholders ("Resend your message to try again", "Press up to
    edit queued messages") are no input (:func:`agentq.agents.classify.pending_input`).
    """
    return bool(pending_input(screen))


def screen_tail(screen: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-blank lines of a screen, right-stripped."""
    kept = [ln.rstrip() for ln in screen.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def progress_view(screen: str) -> str:
    """The screen as the stale rule compares it: without the status (spinner) lines."""
    return "\n".join(
        line
        for line in screen.splitlines()
        if not (len(line) > 2 and line[0] in STATUS_GLYPHS and line[1] == " ")
    )
