"""http-gevent: the gevent peer of `bench/compare http`.

gevent runs plain blocking socket code on greenlets, the idea coil has for C:
one greenlet per connection reads request lines and answers each keep-alive
GET / (its headers ending in an empty line) with a 13-byte "Hello, World!"
body. One process.

    python3 http-gevent.py PORT
"""
import sys

from gevent.server import StreamServer

REPLY = (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
         b"Content-Type: text/plain\r\n\r\nHello, World!")


def serve(sock, _addr):
    lines = sock.makefile("rb")
    try:
        for line in lines:
            if line in (b"\r\n", b"\n"):
                sock.sendall(REPLY)
    except OSError:
        pass
    finally:
        lines.close()
        sock.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: http-gevent.py PORT")
    StreamServer(("127.0.0.1", int(sys.argv[1])), serve, backlog=4096).serve_forever()
