#!/usr/bin/env python3
"""pty-driver.py - a terminal for test-ghost-tty.sh: what a terminal
emulator or sshd is to a shell, without a screen.

Usage: pty-driver.py CONTROL LOG PIDFILE -- COMMAND...

Runs COMMAND on the slave of a new pty (its own session, the pty its
controlling terminal), writes its pid to PIDFILE, appends every byte the
pty gives to LOG, and types into the pty every byte written to the FIFO
CONTROL. The master is held across a checkpoint: while nobody holds the
slave (the tree was killed and is not restored yet) a read gives EIO, and
the driver waits for the slave to be opened again (and reaps the command
it started, killed by its checkpoint, so its pid is free for the restore). Ends when CONTROL says
"\\0quit" or after an hour.
"""
import os
import pty
import select
import sys
import time


def main():
    control, log, pidfile = sys.argv[1:4]
    if sys.argv[4] != "--":
        sys.exit("usage: pty-driver.py CONTROL LOG PIDFILE -- COMMAND...")
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[5], sys.argv[5:])
    with open(pidfile + ".tmp", "w") as f:
        f.write("%d\n" % pid)
    os.rename(pidfile + ".tmp", pidfile)
    ctl = os.open(control, os.O_RDWR | os.O_NONBLOCK)   # RDWR: never EOF
    out = open(log, "ab", buffering=0)
    end = time.time() + 3600
    while time.time() < end:
        try:   # the command, killed by its checkpoint: its pid must be free
            os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pass
        r, _, _ = select.select([master, ctl], [], [], 0.2)
        if ctl in r:
            data = os.read(ctl, 4096)
            if data.startswith(b"\0quit"):
                break
            os.write(master, data)
        if master in r:
            try:
                out.write(os.read(master, 4096))
            except OSError:      # EIO: no slave open (between kill and restore)
                time.sleep(0.05)


if __name__ == "__main__":
    main()
