# agentq's agent hook: one call records one signal file, and the hook always exits 0.
#
# Written into each account's settings.json as: /bin/sh <this file> EVENT STATE_DIR
# The agent gives the event's JSON payload on stdin. It goes into the signal file
# untouched, by cat, after a small header: this shell never parses it, and no
# Python starts (a hook runs several times per task; this costs a few milliseconds).
#
#   STATE_DIR/signals/<unix time in ns>-<EVENT>-<pid>.sig
#       agentq-signal 1
#       event <EVENT>                  letters only, else "Unknown"
#       session <tmux session name>    empty when unknown
#       time <unix time, s.ns>         empty when date cannot say (the file's mtime counts)
#       <empty line>
#       <the payload, as the agent sent it>
#
# The file is written under a temp name in the same folder and renamed, so the
# daemon never reads half of one; agentq.agents.hooks.read_signals parses it.

event=$1
state_dir=$2
case $event in
  '' | *[!A-Za-z]*) event=Unknown ;;
esac
[ "${#event}" -le 64 ] || event=Unknown
[ -n "$state_dir" ] || exit 0

# The pool's sessions say who they are; any other tmux pane is asked about.
session=${AGENTQ_SESSION-}
if [ -z "$session" ] && [ -n "${TMUX-}" ]; then
  case ${TMUX_PANE-} in
    %[0-9]*)
      limit=
      command -v timeout >/dev/null 2>&1 && limit="timeout 2"
      session=$($limit tmux -S "${TMUX%%,*}" display-message -p -t "$TMUX_PANE" \
        '#{session_name}' 2>/dev/null) || session=
      ;;
  esac
fi
# One header line each: nothing but the characters a session name of ours may hold.
case $session in
  *[!A-Za-z0-9_.@+=-]*) session= ;;
esac

now=$(date +%s.%N 2>/dev/null) || now=
case $now in
  [0-9]*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) stamp=${now%.*}${now#*.} ;;
  *) now= stamp=$(date +%s 2>/dev/null)000000000 ;;
esac

umask 077
dir=$state_dir/signals
tmp=$dir/.agentq-tmp-hook-$$-$stamp
[ -d "$dir" ] || mkdir -p "$dir" 2>/dev/null
{
  {
    printf 'agentq-signal 1\nevent %s\nsession %s\ntime %s\n\n' "$event" "$session" "$now"
    cat
  } >"$tmp" && mv -f "$tmp" "$dir/$stamp-$event-$$.sig"
} 2>>"$state_dir/hook-errors.log" || rm -f "$tmp" 2>/dev/null
exit 0
