#!/usr/bin/env python3
"""Writes the seed corpus, a few valid inputs per fuzz target, to fuzz/corpus/<target>/seed-*.

The KPL framing is the one ingester/src/decode/testing.rs `encode_aggregated` writes: magic,
protobuf AggregatedRecord (key tables, then records), MD5 of the protobuf.
Usage: python3 fuzz/seeds.py
"""
import gzip
import hashlib
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
MAGIC = bytes([0xF3, 0x89, 0x9A, 0xC2])

DATA_MESSAGE = (
    b'{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/f",'
    b'"logStream":"2024/01/01/[$LATEST]abc","subscriptionFilters":["to-kinesis"],"logEvents":['
    b'{"id":"e1","timestamp":1700000000001,"message":"first"},'
    b'{"id":"e2","timestamp":1700000000002,"message":"{\\"level\\":\\"info\\"}"}]}'
)
CONTROL_MESSAGE = (
    b'{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"",'
    b'"subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1700000000000,'
    b'"message":"CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]}'
)


def varint(n):
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(tag, value):
    """A protobuf field: varint for int, length-delimited for bytes."""
    if isinstance(value, int):
        return varint(tag << 3) + varint(value)
    return varint(tag << 3 | 2) + varint(len(value)) + value


def frame(protobuf):
    return MAGIC + protobuf + hashlib.md5(protobuf).digest()


def aggregated(records):
    """records: (partition_key, explicit_hash_key or None, data) tuples."""
    keys, hash_keys, body = [], [], b""
    for key, hash_key, data in records:
        if key not in keys:
            keys.append(key)
        user = field(1, keys.index(key))
        if hash_key is not None:
            if hash_key not in hash_keys:
                hash_keys.append(hash_key)
            user += field(2, hash_keys.index(hash_key))
        body += field(3, user + field(3, data))
    tables = b"".join(field(1, k.encode()) for k in keys)
    tables += b"".join(field(2, k.encode()) for k in hash_keys)
    return frame(tables + body)


def gz(data):
    return gzip.compress(data, mtime=0)


def main():
    seeds = {
        "kpl": {
            "plain": b"not aggregated",
            "one": aggregated([("pk", None, b"hello")]),
            "three-shared-key": aggregated([("a", None, b"1"), ("b", None, b"2"), ("a", None, b"3")]),
            "explicit-hash-key": aggregated(
                [("pk", str(2**128 - 1), b"high"), ("pk", "0", b"low")]
            ),
            "empty": aggregated([]),
            "bad-protobuf": frame(b"\xff\xff\xff"),
        },
        "cloudwatch": {
            "data-plain": DATA_MESSAGE,
            "data-gzip": gz(DATA_MESSAGE),
            "control-gzip": gz(CONTROL_MESSAGE),
        },
        "gzip": {
            "text": gz(b"hello, world\n"),
            "empty": gz(b""),
            "json": gz(DATA_MESSAGE),
            "two-members": gz(b"first member ") + gz(b"second member"),
        },
        "config": {
            p.stem: p.read_bytes() for p in sorted((ROOT.parent / "examples").glob("*.yaml"))
        },
        # The ndjson target reads its input through `arbitrary`: any bytes make a record.
        "ndjson": {
            "text": b'hello "world"\n\x00\x01 shard pk 12345678',
            "binary": bytes([0xFF, 0xFE, 0x80, 0x00, 0x10, 0x20, 0x30, 0x41, 0x42]),
            "long": bytes(range(256)),
        },
    }
    for target, files in seeds.items():
        directory = ROOT / "corpus" / target
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            assert len(data) < 64 << 10, (target, name)
            (directory / f"seed-{name}").write_bytes(data)


if __name__ == "__main__":
    main()
