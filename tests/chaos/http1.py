"""A small HTTP/1.1 keep-alive client on asyncio streams, for the chaos load client.

Why not httpx: its async connection pool costs CPU per request that grows with the requests
waiting on it — measured against intake's /health from one process: 2.9 ms of CPU per request
at 10 concurrent, 9.0 ms at 90, 10.9 ms at 180 (this client: 0.06–0.08 ms). With the harness's
180 streams that capped the load near 90 requests/s on a whole core, and on a 2-core box it took
that core from the system under test. The load needs one connection per stream (a stream has
one send in flight, by design), so no pool is needed at all.

It speaks plain HTTP/1.1 as any client would: a request line, headers, a Content-Length body;
the answer's status line, headers and body by Content-Length or chunked encoding (or up to the
close). Any failure — refused connection, reset, early close, timeout — closes the connection
and raises TransportError; the next request reconnects.
"""
import asyncio
import json


class TransportError(Exception):
    """No (complete) answer: the request may or may not have reached the server."""


class Response:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body

    @property
    def text(self):
        return self.content.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.content)  # ValueError when it is not JSON


class Connection:
    def __init__(self, host, port, timeout_s=15.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.reader = self.writer = None

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, headers=None, json_body=None):
        body = b"" if json_body is None else json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        if json_body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            return await asyncio.wait_for(self._exchange(raw), self.timeout_s)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ValueError, IndexError) as e:
            self.close()  # in an unknown state: never reused
            raise TransportError(f"{method} {path}: {type(e).__name__}: {e}") from None

    async def _exchange(self, raw):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if status in (204, 304) or status < 200:
            body = b""  # no body by definition (RFC 9112 6.3)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers expected; the final CRLF
                    break
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
            body = bytes(body)
        elif "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:
            body = await self.reader.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)
