"""Hostile clients for the hardening tests, on raw sockets (dcmtk and pynetdicom re-encode or
refuse what these send). Every subcommand prints JSON lines; connections come from the given
loopback source address (all of 127/8 is loopback), so the server's per-address limits apply.

  deep-dimse PORT DEPTH                -> {"status": int, "comment": str}: a C-STORE whose data
                                          set nests sequences DEPTH deep (undefined lengths)
  deep-stow URL DEPTH                  -> {"http": int, "body": str}: the same by STOW-RS
  trickle PORT N SECONDS SOURCE        -> {"started": N}, then {"closed": [s or null, ...]}: N
                                          connections each sending an A-ASSOCIATE-RQ one byte a
                                          second; when the server closed each
  flood PORT N BYTES SOURCE COUNT      -> {"holding": {...}} once N connections (from COUNT
                                          addresses from SOURCE on) each sent BYTES of an
                                          A-ASSOCIATE-RQ declaring 1,000,000; closes them all on a
                                          line from stdin, then {"done": true}
  http-trickle PORT N SECONDS SOURCE   -> as trickle, with HTTP request headers
  http-hold PORT N SOURCE              -> {"busy": n answered 503, "open": n still open}
  spray PORT USER PASSWORD OTHER OTHER_PASSWORD N
                                       -> {...}: lock USER out, spray N names from many
                                          addresses, try USER's password; lock an address out,
                                          try OTHER's password from it and from elsewhere
"""
import http.client
import ipaddress
import json
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HOST = "127.0.0.1"
CT = b"1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def source(first: str, k: int) -> str:
    return str(ipaddress.ip_address(first) + k)


def connect(port: int, src: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect((HOST, port))
    return s


# --- DICOM encoding, just enough ------------------------------------------------------------

def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    """Explicit VR Little Endian."""
    if len(value) % 2:
        value += b"\0"
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def nested_dataset(depth: int, sop: bytes) -> bytes:
    """A CT data set whose Other Patient IDs Sequence (0010,1002) nests DEPTH deep."""
    undefined = 0xFFFFFFFF
    nest = (struct.pack("<HH2sHI", 0x10, 0x1002, b"SQ", 0, undefined)
            + struct.pack("<HHI", 0xFFFE, 0xE000, undefined)) * depth
    nest += (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)) * depth
    return (element(8, 0x16, b"UI", CT) + element(8, 0x18, b"UI", sop)
            + element(0x10, 0x10, b"PN", b"DEEP^NEST") + element(0x10, 0x20, b"LO", b"DEEP-1")
            + nest
            + element(0x20, 0xD, b"UI", b"1.2.826.0.1.3680043.10.999.2")
            + element(0x20, 0xE, b"UI", b"1.2.826.0.1.3680043.10.999.3"))


def implicit(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\0"
    return struct.pack("<HHI", group, elem, len(value)) + value


def item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BBH", kind, 0, len(value)) + value


def associate_rq(called: bytes = b"PACS", calling: bytes = b"HOSTILE") -> bytes:
    pc = struct.pack(">BBBB", 1, 0, 0, 0) + item(0x30, CT) + item(0x40, EXPLICIT_LE)
    body = (struct.pack(">HH", 1, 0) + called.ljust(16) + calling.ljust(16) + b"\0" * 32
            + item(0x10, b"1.2.840.10008.3.1.1.1") + item(0x20, pc)
            + item(0x50, item(0x51, struct.pack(">I", 65536)) + item(0x52, b"1.2.3")))
    return struct.pack(">BBI", 1, 0, len(body)) + body


def read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def read_pdu(s: socket.socket):
    head = read_exact(s, 6)
    return head[0], read_exact(s, struct.unpack(">I", head[2:6])[0])


def pdv(data: bytes, control: int) -> bytes:
    return struct.pack(">BBI", 4, 0, len(data) + 6) + struct.pack(">IBB", len(data) + 2, 1, control) + data


def command_fields(data: bytes) -> dict:
    fields, i = {}, 0
    while i + 8 <= len(data):
        group, elem, length = struct.unpack("<HHI", data[i:i + 8])
        fields[(group, elem)] = data[i + 8:i + 8 + length]
        i += 8 + length
    return fields


def deep_dimse(port: int, depth: int) -> None:
    s = connect(port, HOST)
    s.settimeout(120)
    s.sendall(associate_rq())
    kind, _ = read_pdu(s)
    if kind != 2:
        out({"associated": False, "pdu": kind})
        return
    sop = b"1.2.826.0.1.3680043.10.999.1.%d" % depth
    ds = nested_dataset(depth, sop)
    cmd = (implicit(0, 2, CT) + implicit(0, 0x100, struct.pack("<H", 1))
           + implicit(0, 0x110, struct.pack("<H", 1)) + implicit(0, 0x700, b"\0\0")
           + implicit(0, 0x800, b"\0\0") + implicit(0, 0x1000, sop))
    cmd = implicit(0, 0, struct.pack("<I", len(cmd))) + cmd
    s.sendall(pdv(cmd, 3))
    step = 16000
    for k in range(0, len(ds), step):
        s.sendall(pdv(ds[k:k + step], 2 if k + step >= len(ds) else 0))
    command = b""
    while True:
        kind, body = read_pdu(s)
        if kind != 4:
            out({"pdu": kind})
            return
        i = 0
        while i < len(body):
            length = struct.unpack(">I", body[i:i + 4])[0]
            control = body[i + 5]
            command += body[i + 6:i + 4 + length]
            i += 4 + length
            if control & 1 and control & 2:
                f = command_fields(command)
                status = struct.unpack("<H", f.get((0, 0x900), b"\xff\xff"))[0]
                comment = f.get((0, 0x902), b"").decode(errors="replace").rstrip("\0 ")
                s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\0\0\0\0")  # A-RELEASE-RQ
                out({"status": status, "comment": comment})
                return


def deep_stow(url: str, depth: int) -> None:
    sop = b"1.2.826.0.1.3680043.10.999.4.%d" % depth
    meta = (element(2, 1, b"OB", b"\0\1") + element(2, 2, b"UI", CT) + element(2, 3, b"UI", sop)
            + element(2, 0x10, b"UI", EXPLICIT_LE))
    part10 = (b"\0" * 128 + b"DICM" + element(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
              + nested_dataset(depth, sop))
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + part10 + b"\r\n--B--\r\n"
    req = urllib.request.Request(url, body, method="POST", headers={
        "Content-Type": 'multipart/related; type="application/dicom"; boundary=B',
        "Accept": "application/dicom+json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            out({"http": r.status, "body": r.read().decode(errors="replace")})
    except urllib.error.HTTPError as e:
        out({"http": e.code, "body": e.read().decode(errors="replace")})


# --- slow and many connections --------------------------------------------------------------

def trickle(port: int, n: int, seconds: int, src: str, payload: bytes) -> None:
    socks = [connect(port, src) for _ in range(n)]
    for s in socks:
        s.setblocking(False)
    out({"started": n})
    closed = [None] * n
    start = time.monotonic()
    for k in range(seconds * 4):
        now = time.monotonic() - start
        for i, s in enumerate(socks):
            if closed[i] is not None:
                continue
            try:
                if s.recv(4096) == b"":
                    closed[i] = round(now, 2)
                    continue
            except BlockingIOError:
                pass
            except OSError:
                closed[i] = round(now, 2)
                continue
            if k % 4 == 0:
                try:
                    s.send(payload[k // 4 % len(payload):][:1])
                except OSError:
                    closed[i] = round(now, 2)
        if all(c is not None for c in closed):
            break
        time.sleep(0.25)
    out({"closed": closed})


def flood(port: int, n: int, size: int, first: str, count: int) -> None:
    declared = 1_000_000
    part = b"\x01\x00" + struct.pack(">I", declared) + b"\0" * (size - 6)
    socks, outcomes, lock = [], {"sent": 0, "refused": 0}, threading.Lock()

    def one(k: int) -> None:
        try:
            s = connect(port, source(first, k % count))
            s.settimeout(10)
            with lock:
                socks.append(s)
            s.sendall(part)
            with lock:
                outcomes["sent"] += 1
        except OSError:
            with lock:
                outcomes["refused"] += 1

    with ThreadPoolExecutor(32) as ex:
        list(ex.map(one, range(n)))
    out({"holding": outcomes})
    sys.stdin.readline()
    for s in socks:
        try:
            s.close()
        except OSError:
            pass
    out({"done": True})


def http_hold(port: int, n: int, src: str) -> None:
    socks = [connect(port, src) for _ in range(n)]
    time.sleep(1.0)
    busy = still_open = 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(4096)
            if data.startswith(b"HTTP/1.1 503"):
                busy += 1
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    out({"busy": busy, "open": still_open})
    for s in socks:
        s.close()


# --- password spraying ----------------------------------------------------------------------

def login(port: int, src: str, user: str, password: str, conn=None) -> int:
    """One login; over `conn` (kept open) when given, else over a connection of its own."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(src, 0))
    body = json.dumps({"username": user, "password": password})
    try:
        conn.request("POST", "/api/login", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        if own:
            conn.close()


def spray(port: int, user: str, password: str, other: str, other_password: str, n: int) -> None:
    result = {}
    home = "127.0.0.2"
    result["wrong"] = [login(port, home, user, f"wrong-{k}-password") for k in range(5)]
    result["locked_right_password"] = login(port, home, user, password)
    # N other names, 20 per address (under the per-address limit), long passwords that are
    # refused before hashing, from 8 threads.
    per_source = 20
    first = ipaddress.ip_address("127.1.0.0")

    def batch(b: int) -> list:
        src = str(first + b)
        conn = http.client.HTTPConnection(HOST, port, timeout=30, source_address=(src, 0))
        try:
            return [login(port, src, f"spray{b}-{k}", "x" * 1100, conn) for k in range(per_source)
                    if b * per_source + k < n]
        finally:
            conn.close()

    with ThreadPoolExecutor(8) as ex:
        codes = [c for chunk in ex.map(batch, range((n + per_source - 1) // per_source)) for c in chunk]
    result["spray"] = {str(c): codes.count(c) for c in set(codes)}
    result["after_spray_right_password"] = login(port, "127.0.0.3", user, password)
    # One address guessing many names is locked out, whatever names it tries next.
    guesser = "127.0.0.4"
    result["guesses"] = [login(port, guesser, f"guess{k}", "not-the-password-at-all") for k in range(31)]
    result["guesser_right_password"] = login(port, guesser, other, other_password)
    result["elsewhere_right_password"] = login(port, "127.0.0.5", other, other_password)
    out(result)


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "deep-dimse":
        deep_dimse(int(args[0]), int(args[1]))
    elif cmd == "deep-stow":
        deep_stow(args[0], int(args[1]))
    elif cmd == "trickle":
        trickle(int(args[0]), int(args[1]), int(args[2]), args[3], associate_rq(calling=b"SLOW"))
    elif cmd == "http-trickle":
        trickle(int(args[0]), int(args[1]), int(args[2]), args[3],
                b"GET /api/statistics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200)
    elif cmd == "flood":
        flood(int(args[0]), int(args[1]), int(args[2]), args[3], int(args[4]))
    elif cmd == "http-hold":
        http_hold(int(args[0]), int(args[1]), args[2])
    elif cmd == "spray":
        spray(int(args[0]), args[1], args[2], args[3], args[4], int(args[5]))
    else:
        sys.exit(f"unknown subcommand {cmd}")


if __name__ == "__main__":
    main()
