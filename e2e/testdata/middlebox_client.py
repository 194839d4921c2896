"""Clients for e2e/middlebox_test.go, run inside a lab host.

Each mode prints one JSON object per line on stdout; every socket operation
has a timeout, so every mode ends within a bounded time.

  cancel HOST PORT PATH READ HOLD
      GET PATH, read READ bytes of the answer, then shutdown(SHUT_WR) (the
      client's FIN: a cancelled download), print {"shut": ...} and keep the
      socket open, without reading, for HOLD seconds. The line has the
      local address (host, port) and the wall clock time of the FIN (at).
  race HOST PORT N IDLE_MS
      N times on a new connection: GET /, read the whole answer, wait until
      IDLE_MS after it arrived, send a second GET on the same connection and
      report what the first recv() gave: "reset" (ECONNRESET), "eof" (an
      empty reply), "response", "timeout" or the error.
  vanish HOST PORT N
      open N keep-alive connections, GET / on each, read the answers, wait
      for the server to close each (EOF), close it, print {"closed": N}.
  idle HOST PORT IDLE WAIT
      GET / and read the answer, stay idle IDLE seconds, GET / again and
      report what came back within WAIT seconds.
"""

import errno
import json
import socket
import sys
import time

REQ = b"GET %s HTTP/1.1\r\nHost: server\r\n\r\n"


def out(**kw):
    print(json.dumps(kw), flush=True)


def connect(host, port, timeout=5.0):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_response(s):
    """Reads one HTTP response with a Content-Length; returns its body size."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise EOFError("EOF in response head")
        buf += b
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    got = len(body)
    while got < length:
        b = s.recv(min(65536, length - got))
        if not b:
            raise EOFError("EOF in response body")
        got += len(b)
    return length


def outcome(s):
    """What the first recv() after a request gives."""
    try:
        b = s.recv(65536)
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    return "response" if b else "eof"


def cancel(host, port, path, want, hold):
    s = connect(host, port)
    s.sendall(REQ % path.encode())
    got = 0
    while got < want:
        b = s.recv(min(65536, want - got))
        if not b:
            break
        got += len(b)
    at = time.time()
    s.shutdown(socket.SHUT_WR)
    local = s.getsockname()
    out(shut=True, read=got, host=local[0], port=local[1], at=at)
    time.sleep(hold)
    s.close()


def race(host, port, n, idle_ms):
    counts = {}
    for i in range(n):
        s = connect(host, port, timeout=2.0)
        try:
            s.sendall(REQ % b"/")
            read_response(s)
            at = time.monotonic()
            time.sleep(max(0.0, at + idle_ms / 1000.0 - time.monotonic()))
            sent = time.monotonic()
            try:
                s.sendall(REQ % b"/")
                res = outcome(s)
            except OSError as e:  # the send itself failed: EPIPE after a reset
                res = "send:" + errno.errorcode.get(e.errno, str(e))
            out(attempt=i, result=res, sent_after_ms=round((sent - at) * 1000, 3))
        finally:
            s.close()
        counts[res] = counts.get(res, 0) + 1
        time.sleep(0.02)
    out(summary=counts)


def vanish(host, port, n):
    socks = []
    for _ in range(n):
        s = connect(host, port, timeout=10.0)
        s.sendall(REQ % b"/")
        read_response(s)
        socks.append(s)
    eofs = 0
    for s in socks:
        if outcome(s) == "eof":
            eofs += 1
        s.close()
    out(closed=len(socks), eofs=eofs)


def idle(host, port, idle_s, wait):
    s = connect(host, port)
    local = s.getsockname()[1]
    s.sendall(REQ % b"/")
    read_response(s)
    time.sleep(idle_s)
    s.settimeout(wait)
    start = time.monotonic()
    try:
        s.sendall(REQ % b"/")
        res = outcome(s)
    except OSError as e:
        res = "send:" + errno.errorcode.get(e.errno, str(e))
    out(result=res, waited_ms=round((time.monotonic() - start) * 1000, 1), port=local)
    s.close()


def main(argv):
    mode, host, port = argv[1], argv[2], int(argv[3])
    if mode == "cancel":
        cancel(host, port, argv[4], int(argv[5]), float(argv[6]))
    elif mode == "race":
        race(host, port, int(argv[4]), float(argv[5]))
    elif mode == "vanish":
        vanish(host, port, int(argv[4]))
    elif mode == "idle":
        idle(host, port, float(argv[4]), float(argv[5]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
