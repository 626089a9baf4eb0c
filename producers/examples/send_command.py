#!/usr/bin/env python3
"""Example producer in Python: publish a message.send command straight onto a Switchboard lane,
without going through intake's HTTP API (for backends that already speak Kafka).

The contract is schemas/commands/command.json; this script validates against it before sending.
What makes it land where intake's commands land, so one tenant's commands stay in order:
  * topic   sb.commands.<priority>  (plus any kafka.topic_prefix your deployment uses)
  * key     the tenant id, UTF-8
  * partitioner murmur2 like Java's default (librdkafka's `murmur2_random`; confluent-kafka's
    default, consistent_random, is CRC32 and would scatter a tenant's commands elsewhere)
  * acks=all and idempotence: the broker confirms before we report success
The command id is the message id: a command with an id already executed is not executed again,
so re-running with --id after a timeout is safe. Intake's GET /v1/messages/{id} shows its status.

  pip install confluent-kafka jsonschema
  send_command.py --brokers localhost:9092 --tenant <uuid> --session main \
      --to +15551234567 --text "hello" [--priority high] [--topic-prefix p.] [--id <uuid>]

Prints one JSON line {"id", "topic", "partition", "offset"} once the broker acknowledged it; exits
1 with the broker's error otherwise, 2 on bad input (nothing sent).
"""
import argparse
import datetime
import json
import os
import sys
import uuid

from confluent_kafka import Producer

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "commands", "command.json")


def command(args: argparse.Namespace) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "id": args.id or str(uuid.uuid4()),
        "type": "message.send",
        "tenant": args.tenant,
        "session": args.session,
        "priority": args.priority,
        "created_at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": {"to": args.to, "text": args.text},
    }


def validate(cmd: dict) -> None:
    """Refuses what a worker would dead-letter, before it leaves this process."""
    try:
        import jsonschema
    except ImportError:
        return  # optional: the worker validates anyway
    with open(SCHEMA, encoding="utf-8") as f:
        jsonschema.Draft7Validator(json.load(f)).validate(cmd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,host:port]")
    p.add_argument("--tenant", required=True, help="tenant id (UUID): the record key")
    p.add_argument("--session", required=True)
    p.add_argument("--to", required=True, help="E.164 recipient, +15551234567")
    p.add_argument("--text", required=True)
    p.add_argument("--priority", default="default", choices=["high", "default", "low"])
    p.add_argument("--topic-prefix", default="", help="kafka.topic_prefix of the deployment, if any")
    p.add_argument("--id", help="message id to (re)send; a new UUID when absent")
    args = p.parse_args()

    cmd = command(args)
    try:
        validate(cmd)
    except Exception as e:  # jsonschema.ValidationError
        print(f"invalid command, not sent: {e}", file=sys.stderr)
        return 2

    producer = Producer({
        "bootstrap.servers": args.brokers,
        "partitioner": "murmur2_random",  # Java-compatible: same partition as intake for the tenant
        "acks": "all",
        "enable.idempotence": True,
        "message.timeout.ms": 30000,
    })
    topic = f"{args.topic_prefix}sb.commands.{args.priority}"
    result = {}

    def delivered(err, msg):
        result["err"] = err
        if err is None:
            result["out"] = {"id": cmd["id"], "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset()}

    producer.produce(topic, key=args.tenant.encode(), value=json.dumps(cmd).encode(), on_delivery=delivered)
    remaining = producer.flush(35)
    if remaining or result.get("err") is not None or "out" not in result:
        print(f"not acknowledged by Kafka ({topic}): {result.get('err') or 'timed out'}", file=sys.stderr)
        return 1
    print(json.dumps(result["out"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
