"""An HTTP app for the bridge tests that answers by path, some of it well
(cookies, ETags, preconditions, WebDAV OPTIONS, bodies of unknown length) and
some of it maliciously (bad status lines, huge headers, invalid chunking,
line breaks in header values, cut-off bodies). One request per connection.

    hostile_app.py PORT
"""
import socket
import sys
import threading
import time


HUNG_UP = threading.Event()


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, {}, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return (method, target), headers, rest


def respond(conn, status, headers=(), body=b"", length=True):
    out = [f"HTTP/1.1 {status}"]
    for name, value in headers:
        out.append(f"{name}: {value}")
    if length:
        out.append(f"Content-Length: {len(body)}")
    out.append("Connection: close")
    conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)


def serve(conn, req):
    (method, target), headers, body = req
    if method is None:
        return
    path = target.split("?")[0]
    if path == "/ok":
        respond(conn, "200 OK", [("Content-Type", "text/plain")], b"fine")
    elif path == "/cookies":
        respond(conn, "200 OK", [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Language", "fr"),
            ("Content-Encoding", "identity"),
            ("Set-Cookie", "sid=abc; Path=/app; HttpOnly; Max-Age=60"),
            ("Set-Cookie", "theme=dark; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
            ("Set-Cookie", "novalue"),
            ("X-Sandstorm-App-Note", "kept"),
            ("X-Secret-Internal", "dropped"),
            ("Content-Disposition", 'attachment; filename="report.txt"'),
            ("ETag", 'W/"v1"'),
        ], b"cookies set")
    elif path.startswith("/download/"):
        # Download names as frameworks send them, chosen by the path.
        disposition = {
            "ext": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9%20v2.pdf",
            "both": "attachment; filename=\"resume.pdf\"; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
            "latin1": "attachment; filename*=ISO-8859-1'en'%A3%20rates.txt",
            "escaped": 'attachment; filename="a \\"b\\".txt"',
            "control": "attachment; filename*=UTF-8''a%0D%0Ab%00c.txt",
            "othercharset": "attachment; filename=\"plain.txt\"; filename*=koi8-r''%C1.txt",
            "inline": "inline; filename=\"shown.txt\"",
            "inquotes": "attachment; filename=\"x filename*=UTF-8''evil.exe\"",
            "prefixed": "attachment; xfilename*=UTF-8''y.exe; filename=\"z.txt\"",
            "c1": "attachment; filename*=UTF-8''a%C2%9Bb%E2%80%AEgpj.exe",
            "badutf8": "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%FF%FE.txt",
            "tab": "attachment; filename=\"a\tb.txt\"",
            "latin1c1": "attachment; filename*=iso-8859-1''a%85%9Bb.txt",
        }[path.split("/")[2]]
        respond(conn, "200 OK", [("Content-Type", "text/plain"),
                                 ("Content-Disposition", disposition)], b"file")
    elif path == "/etag":
        inm = headers.get("if-none-match")
        im = headers.get("if-match")
        if inm and ('"abc"' in inm or inm == "*"):
            respond(conn, "304 Not Modified", [("ETag", '"abc"')], length=False)
        elif im and '"abc"' not in im and im != "*":
            respond(conn, "412 Precondition Failed", [("ETag", '"abc"')], b"changed")
        else:
            respond(conn, "200 OK", [("ETag", '"abc"'), ("Content-Type", "text/plain")], b"tagged")
    elif path == "/html500":
        respond(conn, "500 Internal Server Error", [("Content-Type", "text/html")],
                b"<p>broken <b>badly</b></p>")
    elif path == "/redirect":
        respond(conn, "303 See Other", [("Location", "/there?x=1")])
    elif path == "/dav":
        respond(conn, "200 OK", [("DAV", "1, 2, extended-mkcol"), ("Allow", "OPTIONS, PROPFIND")])
    elif path == "/unknown-length":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Connection: close\r\n\r\n" + b"x" * 100000)
    elif path == "/badstatus":
        conn.sendall(b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n")
    elif path == "/hugeheaders":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200000 + b"\r\nContent-Length: 0\r\n\r\n")
    elif path == "/manyheaders":
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(1000))
                     + b"Content-Length: 0\r\n\r\n")
    elif path == "/badchunk":
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    elif path == "/crlf":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Sandstorm-App-A: x\rSet-Cookie: evil=1\r\n"
                     b"Content-Length: 2\r\n\r\nok")
    elif path == "/folded":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Sandstorm-App-A: x\r\n Set-Cookie: evil=1\r\n"
                     b"Content-Length: 2\r\n\r\nok")
    elif path == "/nul":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Sandstorm-App-A: a\x00b\r\nContent-Length: 2\r\n\r\nok")
    elif path == "/hang":
        # Never answers; notes when the bridge hangs up.
        while conn.recv(65536):
            pass
        HUNG_UP.set()
    elif path == "/hungup":
        seen = HUNG_UP.wait(10)
        respond(conn, "200 OK", [("Content-Type", "text/plain")], b"closed" if seen else b"open")
    elif path == "/ws-badaccept":
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBhbnN3ZXI=\r\n\r\n")
    elif path == "/nohead":
        pass
    elif path == "/cut":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    elif path == "/cutstream":
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"y" * 200000)
    elif path == "/interim":
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew")
    elif path == "/echo":
        respond(conn, "200 OK", [("Content-Type", "application/octet-stream")], body)
    elif path == "/whoami":
        respond(conn, "200 OK", [("Content-Type", "text/plain")],
                f"{target} for {headers.get('x-sandstorm-username')}".encode())
    elif path == "/trailers":
        # An error answered at the end of its body, with trailer fields that
        # must not be merged into the response's headers (RFC 9110 6.5.1).
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"4\r\nfail\r\n0\r\nSet-Cookie: evil=1\r\nX-Sandstorm-App-Late: t\r\n"
                     b"Location: https://evil.example/\r\n\r\n")
    elif path == "/tinychunks":
        # 1 MB of one-byte chunks: a write call per byte if passed on as it comes.
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        block = b"1\r\nz\r\n" * 65536
        for _ in range(16):
            conn.sendall(block)
        conn.sendall(b"0\r\n\r\n")
    elif path == "/interim-length":
        # A 1xx never has a body, whatever its headers say (RFC 9112 6.3).
        conn.sendall(b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    else:
        respond(conn, "404 Not Found", [("Content-Type", "text/plain")], b"nothing here")


CONNECTIONS = [0]


def keep_alive(conn, first):
    """/keepalive: answers on one connection as long as asked, saying which
    connection and which request it is; ?close=1 closes it after answering,
    ?dropnext=1 closes it when the next request arrives, unanswered."""
    CONNECTIONS[0] += 1
    serial, count = CONNECTIONS[0], 0
    req = first
    while req:
        (method, target), headers, body = req
        count += 1
        text = f"conn {serial} req {count}".encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(text), text))
        if "close=1" in target:
            return
        req = read_request(conn)
        if req[0] is None or "dropnext=1" in target:
            return


def bodiless(conn, first):
    """/bodiless/STATUS/HEADER: a 204 or 304 whose head announces a body
    (Content-Length: 1234, or chunked), which it cannot have (RFC 9112
    6.3); then waits 3 s on the same connection for a next request, which
    it answers with "reused" (the bridge should not send one there)."""
    status, how = first[0][1].split("/")[2:4]
    framing = "Content-Length: 1234" if how == "length" else "Transfer-Encoding: chunked"
    conn.sendall(f"HTTP/1.1 {status} X\r\nETag: \"abc\"\r\n{framing}\r\n\r\n".encode())
    conn.settimeout(3)
    try:
        req = read_request(conn)
    except socket.timeout:
        return
    if req[0] is not None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nreused")


def early_answer(conn, first):
    """/early-answer: answers a POST as if it had not read its body and
    keeps the connection (as naive HTTP/1.1 servers do), then reads the
    body as the next request: if the bridge sends another request on this
    connection, the body smuggles a request with headers of the sender's
    choosing, which swallows the next user's request as its own body."""
    rest = first[2]
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    while b"\r\n\r\n" not in rest:
        chunk = conn.recv(65536)
        if not chunk:
            return
        rest += chunk
    head, _, body = rest.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict((n.strip().lower(), v.strip()) for n, _, v in (l.partition(":") for l in lines[1:]))
    n = int(fields.get("content-length", "0"))
    while len(body) < n:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    text = f"{lines[0].split()[1]} for {fields.get('x-sandstorm-username')}: ".encode() + body[:n]
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))


def late_head_body(conn, first):
    """/late-head-body: answers HEAD with the head, then (as a naive app
    does) sends the body a moment later: bytes that look like a response
    (a user's upload, say), which must never answer the next request."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 65\r\n\r\n")
    time.sleep(0.3)
    conn.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: evil=1\r\nContent-Length: 8\r\n\r\ninjected")
    while conn.recv(65536):
        pass


def handle(conn):
    try:
        req = read_request(conn)
        if req[0] is not None and req[0][1].startswith("/keepalive"):
            keep_alive(conn, req)
        elif req[0] is not None and req[0][1] == "/late-head-body":
            late_head_body(conn, req)
        elif req[0] is not None and req[0][1].startswith("/bodiless/"):
            bodiless(conn, req)
        elif req[0] is not None and req[0][1] == "/early-answer":
            early_answer(conn, req)
        else:
            serve(conn, req)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen(64)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
