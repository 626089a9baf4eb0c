#!/usr/bin/env python3
"""An independent client of intake's event stream, driven by the integration tests.

    stream_client.py sse URL KEY [--last-event-id ID] [--count N] [--pause-after N] [--origin O]
    stream_client.py ws  URL KEY [--count N]

SSE goes through httpx (streaming response) parsed by sseclient-py; WebSocket through the
`websockets` library: none of switchboard's code. Everything the client sees is printed to
stdout as one JSON object per line, flushed at once, so the test waits on what arrives:

    {"kind": "status", "status": 200, "body": ...}      the HTTP answer (body only when not 200)
    {"kind": "open", "data": {...}}                     the stream.open message
    {"kind": "event", "cursor": "3-17", "type": ..., "event": {...}, "t": <unix time>}
    {"kind": "error", "data": {...}}                    a stream.error message (SSE)
    {"kind": "closed", "code": 1013, "reason": "..."}   the server ended the stream
    {"kind": "done"}                                    --count events received

--origin O: sent as the Origin header, as a browser's EventSource on page O does; the status
line then carries the answer's CORS headers ("cors": {header: value}).

--pause-after N: after N events, stop reading the socket until a line arrives on stdin (a
client that stops reading, as a stalled browser tab would).
"""
import argparse
import asyncio
import json
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def slim(event):
    """The event as printed: a padding field (the slow-client test's bulk) replaced by its length."""
    data = event.get("data")
    if isinstance(data, dict) and isinstance(data.get("padding"), str):
        data["padding"] = len(data["padding"])
    return event


def run_sse(args):
    import httpx
    import sseclient

    headers = {"Authorization": "Bearer " + args.key, "Accept": "text/event-stream"}
    if args.last_event_id:
        headers["Last-Event-ID"] = args.last_event_id
    if args.origin:
        headers["Origin"] = args.origin
    timeout = httpx.Timeout(connect=10.0, read=None, write=10.0, pool=10.0)
    received = 0
    with httpx.Client(timeout=timeout) as http:
        with http.stream("GET", args.url, headers=headers) as resp:
            cors = {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith("access-control-") or k.lower() == "vary"}
            if resp.status_code != 200:
                resp.read()
                emit({"kind": "status", "status": resp.status_code, "body": resp.json() if resp.content else None, "cors": cors})
                return
            emit({"kind": "status", "status": 200, "content_type": resp.headers.get("content-type"), "cors": cors})
            # While paused nothing pulls this iterator, so nothing more is read from the socket
            # (at most one read's worth sits in httpx's buffer).
            for ev in sseclient.SSEClient(resp.iter_bytes()).events():
                if ev.event == "stream.open":
                    emit({"kind": "open", "data": json.loads(ev.data)})
                elif ev.event == "stream.error":
                    emit({"kind": "error", "data": json.loads(ev.data)})
                else:
                    emit({"kind": "event", "cursor": ev.id, "type": ev.event, "event": slim(json.loads(ev.data)), "t": time.time()})
                    received += 1
                    if args.pause_after is not None and received == args.pause_after:
                        emit({"kind": "paused"})
                        sys.stdin.readline()
                        emit({"kind": "resumed"})
                    if args.count and received >= args.count:
                        emit({"kind": "done"})
                        return
    emit({"kind": "closed"})


async def run_ws_async(args):
    import websockets

    headers = {"Authorization": "Bearer " + args.key}
    received = 0
    try:
        async with websockets.connect(args.url, additional_headers=headers, max_size=None, open_timeout=10) as ws:
            emit({"kind": "status", "status": 101})
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("stream") == "open":
                    emit({"kind": "open", "data": msg})
                    continue
                emit({"kind": "event", "cursor": msg["cursor"], "type": msg["event"]["type"], "event": slim(msg["event"]), "t": time.time()})
                received += 1
                if args.count and received >= args.count:
                    emit({"kind": "done"})
                    return
            emit({"kind": "closed", "code": ws.close_code, "reason": ws.close_reason})
    except websockets.exceptions.InvalidStatus as e:
        body = e.response.body.decode() if e.response.body else ""
        emit({"kind": "status", "status": e.response.status_code, "body": json.loads(body) if body else None})
    except websockets.exceptions.ConnectionClosed as e:
        emit({"kind": "closed", "code": e.rcvd.code if e.rcvd else None, "reason": e.rcvd.reason if e.rcvd else None})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["sse", "ws"])
    ap.add_argument("url")
    ap.add_argument("key")
    ap.add_argument("--last-event-id")
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--pause-after", type=int)
    ap.add_argument("--origin")
    args = ap.parse_args()
    try:
        if args.mode == "sse":
            run_sse(args)
        else:
            asyncio.run(run_ws_async(args))
    except Exception as e:  # the test sees what went wrong instead of a silent exit
        emit({"kind": "exception", "type": type(e).__name__, "detail": str(e)})
        sys.exit(1)


if __name__ == "__main__":
    main()
