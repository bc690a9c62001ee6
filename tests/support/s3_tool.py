"""Signed S3 requests to the test's S3 server (moto), as a real client makes them.

usage: s3_tool.py ENDPOINT create BUCKET
       s3_tool.py ENDPOINT list BUCKET PREFIX     (prints one key per line)
       s3_tool.py ENDPOINT put BUCKET KEY         (a small object)
"""
import sys

import boto3


def main() -> None:
    endpoint, cmd, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    if cmd == "create":
        s3.create_bucket(Bucket=bucket)
    elif cmd == "list":
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4])
        for page in pages:
            for obj in page.get("Contents", []):
                print(obj["Key"])
    elif cmd == "put":
        s3.put_object(Bucket=bucket, Key=sys.argv[4], Body=b"not an instance")
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
