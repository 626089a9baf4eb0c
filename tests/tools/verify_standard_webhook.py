#!/usr/bin/env python3
"""Independent oracle for Switchboard's webhook signatures: verifies one message with the official
Standard Webhooks Python library (PyPI `standardwebhooks`, installed by scripts/lib/python.sh).

stdin: JSON {"secret": "whsec_...", "id": "...", "timestamp": "...", "signature": "...",
             "body": "..."}   (timestamp may be a string or an integer)
stdout: "ok" (exit 0), or the library's error (exit 1). Bad input or a missing library: exit 2.

The library checks the timestamp against the current clock (5 minutes tolerance), so callers must
sign with a current timestamp.
"""
import json
import sys


def main() -> int:
    try:
        from standardwebhooks import Webhook
    except ImportError as e:
        print(f"standardwebhooks is not installed for {sys.executable}: {e} "
              "(run sb_python_tools from scripts/lib/python.sh)")
        return 2
    try:
        req = json.load(sys.stdin)
        secret, body = req["secret"], req["body"]
        headers = {
            "webhook-id": req["id"],
            "webhook-timestamp": str(req["timestamp"]),
            "webhook-signature": req["signature"],
        }
    except (ValueError, KeyError, TypeError) as e:
        print(f"bad input: {e!r}")
        return 2
    try:
        # json_parse=False: verify the raw bytes only; the body need not be JSON.
        Webhook(secret).verify(body.encode("utf-8"), headers, json_parse=False)
    except Exception as e:  # the library raises WebhookVerificationError and plain errors alike
        print(f"{type(e).__name__}: {e}")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
