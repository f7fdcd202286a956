"""The CPython side of tests/cpython.rs: a multiprocessing.connection Client or Listener that
exchanges send_bytes/recv_bytes messages with a multiproc peer.

    cpython_peer.py client   unix|tcp ADDRESS AUTHKEY
    cpython_peer.py listener unix|tcp ADDRESS AUTHKEY

ADDRESS is a socket path, or host:port (a listener prints the port it bound, as host:port, on
its first line of output). Exit status: 0 after a complete exchange, 3 on AuthenticationError,
anything else on a failure.
"""

import signal
import sys
from multiprocessing.connection import AuthenticationError, Client, Listener

# Never outlive a stuck test.
signal.alarm(60)


def pattern(n):
    """The test data of tests/common/mod.rs."""
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def exchange(conn):
    conn.send_bytes(b"hello from python")
    got = conn.recv_bytes()
    assert got == b"hello from rust", got
    conn.send_bytes(b"")
    big = conn.recv_bytes()
    assert len(big) == 1 << 20, len(big)
    assert big == pattern(len(big)), "the large message was damaged"
    conn.send_bytes(big[::-1])
    got = conn.recv_bytes()
    assert got == b"bye", got
    conn.close()


def main():
    mode, family, address, authkey = sys.argv[1:]
    authkey = authkey.encode()
    if family == "unix":
        family, address = "AF_UNIX", address
    else:
        host, port = address.rsplit(":", 1)
        family, address = "AF_INET", (host, int(port))
    try:
        if mode == "client":
            exchange(Client(address, family=family, authkey=authkey))
        else:
            with Listener(address, family=family, authkey=authkey) as listener:
                if family == "AF_INET":
                    print("%s:%d" % listener.address, flush=True)
                else:
                    print(listener.address, flush=True)
                exchange(listener.accept())
    except AuthenticationError as err:
        print("AuthenticationError:", err, file=sys.stderr)
        sys.exit(3)


main()
