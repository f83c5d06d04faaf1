#!/bin/sh
# In the guest: the C API over TIPC alone, SCTP alone, and all four
# transports on one handle, against real servers; then the user guide's C
# example over TIPC, as the guide runs it.
set -u
nmdb=$1
stats=$2
status=0

# start NAME ARGS...: a server in the foreground, logging to /tmp/NAME.log;
# returns once it serves. A server that cannot start ends this part at once
# with its log: every call after it would only wait out its timeout.
start() {
    name=$1
    shift
    [ -x "$nmdb" ] || { echo "guest: no server program at $nmdb"; exit 1; }
    "$nmdb" -f -d "/tmp/$name.db" -o "/tmp/$name.log" "$@" &
    pid=$!
    i=0
    until grep -q '\] ready$' "/tmp/$name.log" 2>/dev/null; do
        i=$((i + 1))
        if ! kill -0 $pid 2>/dev/null || [ $i -gt 3000 ]; then
            echo "guest: server $name did not start; its log:"
            cat "/tmp/$name.log" 2>/dev/null
            kill $(jobs -p) 2>/dev/null
            exit 1
        fi
        sleep 0.01
    done
}

start tipc -l 70 --no-tcp --no-udp --no-sctp
start sctp -S 127.0.0.1 -s 27001 --no-tipc --no-tcp --no-udp
start tcp -T 127.0.0.1 -t 27002 --no-tipc --no-udp --no-sctp
start udp -U 127.0.0.1 -u 27003 --no-tipc --no-tcp --no-sctp

/guest/guest_api tipc:70 || status=1
/guest/guest_api sctp:127.0.0.1:27001 || status=1
/guest/guest_api tipc:70 tcp:127.0.0.1:27002 udp:127.0.0.1:27003 sctp:127.0.0.1:27001 || status=1
/guest/guide_example tipc 70 || status=1

# nmdb-stats with the original command line, over the kernel transports.
"$stats" tipc 70 | grep -q 'msg_tipc' || { echo "guest: nmdb-stats tipc failed"; status=1; }
"$stats" sctp 127.0.0.1 27001 | grep -q 'msg_sctp' || { echo "guest: nmdb-stats sctp failed"; status=1; }

kill $(jobs -p) 2>/dev/null
wait
exit $status
