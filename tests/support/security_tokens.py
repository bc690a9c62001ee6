#!/usr/bin/env python3
"""Tokens for the security tests, made with the standard library and the openssl CLI.

  security_tokens.py jwt KEY.pem --iss I --aud A [--role R] [--patient-id P] [--exp-in S]
                     [--kid K] [--alg RS256|none] [--amr mfa]
  security_tokens.py share SECRET_FILE STUDY_UID EXPIRES_UNIX
"""
import argparse
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(args) -> str:
    header = {"alg": args.alg, "typ": "JWT"}
    if args.kid:
        header["kid"] = args.kid
    now = int(time.time())
    claims = {
        "iss": args.iss,
        "aud": args.aud,
        "sub": args.sub,
        "preferred_username": args.sub,
        "iat": now,
        "exp": now + args.exp_in,
    }
    if args.role:
        claims["pacs_role"] = args.role
    if args.patient_id:
        claims["patient_id"] = args.patient_id
    if args.amr:
        claims["amr"] = [args.amr]
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if args.alg == "none":
        return signing_input + "."
    # RS256 is RSASSA-PKCS1-v1_5 over SHA-256: exactly what `openssl dgst -sign` makes.
    sig = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", args.key],
        input=signing_input.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return f"{signing_input}.{b64url(sig)}"


def share(args) -> str:
    secret = open(args.secret_file, "rb").read()
    payload = f"{args.study}.{args.expires}"
    sig = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return f"{b64url(payload.encode())}.{b64url(sig)}"


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    j = sub.add_parser("jwt")
    j.add_argument("key")
    j.add_argument("--iss", required=True)
    j.add_argument("--aud", required=True)
    j.add_argument("--sub", default="jwt-user")
    j.add_argument("--role")
    j.add_argument("--patient-id")
    j.add_argument("--exp-in", type=int, default=300)
    j.add_argument("--kid", default="test-rsa")
    j.add_argument("--alg", default="RS256", choices=["RS256", "none"])
    j.add_argument("--amr")
    s = sub.add_parser("share")
    s.add_argument("secret_file")
    s.add_argument("study")
    s.add_argument("expires", type=int)
    args = p.parse_args()
    print(jwt(args) if args.cmd == "jwt" else share(args))


if __name__ == "__main__":
    sys.exit(main())
