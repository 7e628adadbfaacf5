# shellcheck shell=bash
# Timing helpers shared by the scripts: how long steps take (for their logs) and bounded waits for a process.

# Microseconds since the epoch (bash 5 EPOCHREALTIME; the separator depends on the locale).
now_us() { local t=${EPOCHREALTIME//[.,]/}; printf '%s' "$((10#$t))"; }

# Seconds since $1 (microseconds), one decimal.
since() {
    local d=$((($(now_us) - $1) / 100000))
    printf '%d.%ds' "$((d / 10))" "$((d % 10))"
}

# wait_pid_for PID SECONDS: true once PID has exited, false if it still runs after SECONDS.
wait_pid_for() {
    local i
    for ((i = 0; i < $2 * 2; i++)); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.5
    done
    ! kill -0 "$1" 2>/dev/null
}
