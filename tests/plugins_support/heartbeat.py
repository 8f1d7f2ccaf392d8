"""A process for the watchdog: sends `beats` heartbeats (forever if 0),
one every `period` seconds, to 127.0.0.1:<port>, then stays silent."""
import os
import socket
import sys
import time

port, period, beats = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
while beats == 0 or sent < beats:
    sock.sendto(b"%d;%f" % (os.getpid(), time.time()), ("127.0.0.1", port))
    sent += 1
    time.sleep(period)
while True:
    time.sleep(3600)
