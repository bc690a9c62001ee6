"""pynetdicom-driven SCU for the integration tests. Prints machine-readable results (JSON).

subcommands:
  echo   PORT [--aec AE]                      -> {"status": 0} or {"rejected": {...}}
  store  PORT FILE... [--threads N]           -> {"statuses": {"0x0000": n, ...}, "failed": [...]}
  bad    PORT KIND                            -> {"status": int, "comment": str}
           KIND: missing-study-uid | uid-mismatch | garbage-dataset | class-mismatch
  raw    PORT KIND                            -> {"reply": first byte or null, "closed": bool}
           KIND: http | bad-rq | pdata-first | mid-association
  hold   PORT SECONDS                         -> prints {"associated": true} then waits
  find   PORT MODEL KEYS_JSON [--cancel-after N] [--pad-keys K] [--count-only]
                                              -> {"status": int, "count": n, "matches": [{keyword: str}]}
           MODEL: patient | study; a key absent from a response is absent from its match;
           --pad-keys adds K empty keys the archive does not index (large responses), and with
           --cancel-after holds back reading until the C-CANCEL is out (see ReadGate);
           --count-only leaves out "matches"
  move   PORT MODEL DEST KEYS_JSON           -> {"status", "completed", "failed", "warning", "pending", "failed_uids"}
  get    PORT MODEL OUT_DIR KEYS_JSON        -> as move, plus "received": {uid: transfer syntax}; each
           received data set saved raw as OUT_DIR/<uid>.raw and as a Part 10 file OUT_DIR/<uid>.dcm
"""
import json
import os
import socket
import struct
import sys
import tempfile
import threading
import time

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom import debug_logger  # noqa: F401
from pynetdicom.sop_class import CTImageStorage, Verification

sys.path.insert(0, os.path.dirname(__file__))
import dicomgen  # noqa: E402

HOST = "127.0.0.1"
# Send files as they are on disk (streamed, UIDs from the File Meta Information), not re-encoded.
_config.STORE_SEND_CHUNKED_DATASET = True


def out(obj) -> None:
    print(json.dumps(obj), flush=True)


def make_ae() -> AE:
    ae = AE(ae_title="TESTSCU")
    ae.acse_timeout = 60
    ae.dimse_timeout = 60
    ae.network_timeout = 20
    return ae


def queued_rejection(assoc):
    """An A-ASSOCIATE-RJ left in the DUL's queue. pynetdicom (3.0) can report a fast
    rejection as an abort: its DUL thread handles the RJ and closes the socket before the
    requesting thread checks that the socket is connected, and that thread then aborts with
    the RJ still queued."""
    from pynetdicom.pdu_primitives import A_ASSOCIATE
    while True:
        item = assoc.dul.receive_pdu(wait=False)
        if item is None:
            return None
        if isinstance(item, A_ASSOCIATE) and item.result in (0x01, 0x02):
            return item


def rejected(assoc) -> dict:
    rsp = getattr(assoc.acceptor, "primitive", None)
    if rsp is None:
        return {"rejected": {"result": None}}
    return {"rejected": {"result": rsp.result, "source": rsp.result_source, "reason": rsp.diagnostic}}


def cmd_echo(port: int, aec: str) -> None:
    ae = make_ae()
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title=aec)
    if assoc.is_established:
        status = assoc.send_c_echo()
        assoc.release()
        out({"status": int(status.Status) if status else None})
    elif assoc.is_rejected or queued_rejection_kept(assoc):
        out(rejected(assoc))
    else:
        out({"aborted": True})


def queued_rejection_kept(assoc) -> bool:
    """Whether an aborted association was in fact rejected (see `queued_rejection`); the RJ
    is kept as the acceptor's primitive for `rejected`."""
    rsp = queued_rejection(assoc)
    if rsp is None:
        return False
    assoc.acceptor.primitive = rsp
    assoc.is_rejected = True
    return True


def contexts_for(files) -> list:
    pairs = []
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        pair = (ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.TransferSyntaxUID)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def store_files(port: int, files, results: dict, lock: threading.Lock) -> None:
    ae = make_ae()
    for sop, ts in contexts_for(files):
        ae.add_requested_context(sop, [ts])
    assoc = ae.associate(HOST, port, ae_title="PACS")
    if not assoc.is_established:
        with lock:
            results["failed"].append("association not established")
        return
    for f in files:
        status = assoc.send_c_store(f)
        key = "0x%04X" % status.Status if status else "none"
        with lock:
            results["statuses"][key] = results["statuses"].get(key, 0) + 1
            if not status or status.Status != 0:
                results["failed"].append({"file": f, "comment": str(status.get("ErrorComment", "")) if status else ""})
    assoc.release()


def cmd_store(port: int, files, threads: int) -> None:
    results = {"statuses": {}, "failed": []}
    lock = threading.Lock()
    chunks = [files[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=store_files, args=(port, c, results, lock)) for c in chunks if c]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out(results)


def write_raw_file(path: str, meta_sop_instance: str, dataset_bytes: bytes, sop_class: str = dicomgen.CT,
                   transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = meta_sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = "1.2.3.4"
    from pydicom.filewriter import write_file_meta_info
    from pydicom.filebase import DicomBytesIO
    buf = DicomBytesIO()
    write_file_meta_info(buf, meta, enforce_standard=True)
    with open(path, "wb") as fh:
        fh.write(b"\0" * 128 + b"DICM" + buf.getvalue() + dataset_bytes)


def encode(ds: Dataset) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    write_dataset(buf, ds)
    return buf.getvalue()


def cmd_bad(port: int, kind: str) -> None:
    tmp = tempfile.mkdtemp()
    path = os.path.join(tmp, "bad.dcm")
    ds = dicomgen.ct_instance(9, 9, 9, 16, 16, patient_no=9)
    if kind == "missing-study-uid":
        del ds.StudyInstanceUID
        write_raw_file(path, ds.SOPInstanceUID, encode(ds))
    elif kind == "uid-mismatch":
        write_raw_file(path, ds.SOPInstanceUID + ".999", encode(ds))
    elif kind == "class-mismatch":
        write_raw_file(path, ds.SOPInstanceUID, encode(ds), sop_class=dicomgen.MR)
    elif kind == "garbage-dataset":
        # An element header claiming far more bytes than follow, then noise.
        write_raw_file(path, ds.SOPInstanceUID, b"\x08\x00\x18\x00UI\xf0\x7f" + os.urandom(300))
    else:
        raise SystemExit("unknown kind " + kind)
    ae = make_ae()
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.4", [ExplicitVRLittleEndian])
    assoc = ae.associate(HOST, port, ae_title="PACS")
    if not assoc.is_established:
        out({"error": "association not established"})
        return
    status = assoc.send_c_store(path)
    assoc.release()
    out({"status": int(status.Status) if status else None,
         "comment": str(status.get("ErrorComment", "")) if status else ""})


def read_reply(sock: socket.socket):
    """(first byte of the server's reply or None, whether the server then closed the
    connection). Closed means end of stream or a reset within 10 s of the reply; a socket still
    open when that time is up counts as open, so a server that keeps it open fails the check."""
    deadline = time.monotonic() + 10
    sock.settimeout(10)
    try:
        data = sock.recv(64)
    except ConnectionResetError:
        return None, True
    except socket.timeout:
        return None, False
    if not data:
        return None, True
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data[0], False
        sock.settimeout(left)
        try:
            rest = sock.recv(4096)
        except ConnectionResetError:
            return data[0], True
        except socket.timeout:
            return data[0], False
        if not rest:
            return data[0], True


def cmd_raw(port: int, kind: str) -> None:
    if kind == "mid-association":
        ae = make_ae()
        ae.add_requested_context(Verification)
        assoc = ae.associate(HOST, port, ae_title="PACS")
        if not assoc.is_established:
            out({"error": "association not established"})
            return
        # A P-DATA PDU whose PDV claims to be longer than the PDU: a broken PDU.
        broken = struct.pack(">BBI", 0x04, 0, 10) + struct.pack(">I", 5000) + b"\x01\x03" + b"\0" * 4
        assoc.dul.socket.socket.sendall(broken)
        deadline = time.time() + 10
        while time.time() < deadline and not assoc.is_aborted:
            time.sleep(0.05)
        out({"aborted": bool(assoc.is_aborted)})
        return
    sock = socket.create_connection((HOST, port), timeout=10)
    if kind == "http":
        sock.sendall(b"GET / HTTP/1.1\r\nHost: pacs\r\n\r\n")
    elif kind == "bad-rq":
        sock.sendall(struct.pack(">BBI", 0x01, 0, 12) + b"\x00\x01garbage!!!")
    elif kind == "pdata-first":
        sock.sendall(struct.pack(">BBI", 0x04, 0, 6) + struct.pack(">I", 2) + b"\x01\x03")
    else:
        raise SystemExit("unknown kind " + kind)
    first, closed = read_reply(sock)
    out({"reply": first, "closed": closed})


FIND_MODELS = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",
    "study": "1.2.840.10008.5.1.4.1.2.2.1",
}


def as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def padding_keys(count: int) -> list:
    """`count` standard keywords the archive does not index (acquisition, equipment, ...
    attributes: not retired, one plain VR, no sequences or bulk data), to be sent empty. The
    SCP returns each of them, empty, in every response, which makes every response large."""
    from pydicom.datadict import DicomDictionary
    keys = []
    for tag, (vr, _vm, _name, retired, keyword) in sorted(DicomDictionary.items()):
        group = tag >> 16
        if retired or not keyword or " or " in vr or vr in ("SQ", "UN", "OB", "OW", "OF", "OD", "OL", "OV",
                                                           "UR", "UT", "UC"):
            continue
        if group in (0x0000, 0x0002, 0x0004, 0x0008, 0x0010, 0x0020, 0x7FE0, 0xFFFE) or group & 1:
            continue
        keys.append(keyword)
        if len(keys) == count:
            return keys
    raise SystemExit(f"only {len(keys)} padding keys available, {count} asked")


class ReadGate:
    """Holds back pynetdicom's reading of the socket while a C-CANCEL goes out, so the cancel
    reaches the SCP while it still has responses to send, however fast it is.

    pynetdicom's DUL thread reads PDUs whenever the socket is readable and queues them without
    bound, so it would otherwise drain everything the SCP can write as fast as the SCP writes it,
    and whether the cancel arrives before the last match would be a race. Here the DUL stops
    reading once it has read `close_after` bytes (enough to hold the first responses) and the
    receive buffer is small, so the SCP's writes block; the gate opens once the C-CANCEL has been
    written to the socket."""

    def __init__(self, close_after: int):
        from pynetdicom import transport
        self.close_after = close_after
        self.read = 0
        self.cancel_requested = threading.Event()
        self.open = threading.Event()
        self.open.set()
        gate = self
        cls = transport.AssociationSocket
        orig_ready, orig_recv, orig_send, orig_create = cls.ready, cls.recv, cls.send, cls._create_socket

        def ready(sock):
            return gate.open.is_set() and orig_ready.fget(sock)

        def recv(sock, nr_bytes):
            data = orig_recv(sock, nr_bytes)
            gate.read += len(data)
            if gate.read >= gate.close_after and not gate.cancel_requested.is_set():
                gate.open.clear()
            return data

        def send(sock, bytestream):
            orig_send(sock, bytestream)
            if gate.cancel_requested.is_set():
                gate.open.set()

        def create(sock, address):
            s = orig_create(sock, address)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: no autotuning
            return s

        cls.ready, cls.recv, cls.send, cls._create_socket = property(ready), recv, send, create


def cmd_find(port: int, model: str, keys: dict, cancel_after, pad_keys: int = 0,
             count_only: bool = False) -> None:
    gate = ReadGate(close_after=256 * 1024) if cancel_after is not None and pad_keys else None
    ae = make_ae()
    uid = FIND_MODELS[model]
    if any(isinstance(v, list) for v in keys.values()):
        ae.add_requested_context(uid, [ExplicitVRLittleEndian])  # so the VR travels
    else:
        ae.add_requested_context(uid)
    assoc = ae.associate(HOST, port, ae_title="PACS")
    if not assoc.is_established:
        out({"error": "association not established"})
        return
    ds = Dataset()
    for k, v in keys.items():
        if isinstance(v, list):
            # [VR, value]: send the key with this VR (to test a key with the wrong VR).
            from pydicom.datadict import tag_for_keyword
            ds.add_new(tag_for_keyword(k), v[0], v[1])
        else:
            setattr(ds, k, v)
    for k in padding_keys(pad_keys) if pad_keys else []:
        setattr(ds, k, None)
    matches, count, final = [], 0, None
    for status, ident in assoc.send_c_find(ds, uid, msg_id=7):
        if status is None:
            break
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            count += 1
            if not count_only:
                matches.append({e.keyword: as_text(e.value) for e in ident if e.keyword})
            if cancel_after is not None and count == cancel_after:
                if gate:
                    gate.cancel_requested.set()
                assoc.send_c_cancel(7, assoc.accepted_contexts[0].context_id)
        else:
            final = {"status": code, "comment": str(status.get("ErrorComment", ""))}
    assoc.release()
    result = final or {"status": None}
    result["count"] = count
    if not count_only:
        result["matches"] = matches
    out(result)


MOVE_MODELS = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.2",
    "study": "1.2.840.10008.5.1.4.1.2.2.2",
}


def cmd_move(port: int, model: str, dest: str, keys: dict, cancel_after=None) -> None:
    ae = make_ae()
    uid = MOVE_MODELS[model]
    ae.add_requested_context(uid)
    assoc = ae.associate(HOST, port, ae_title="PACS")
    if not assoc.is_established:
        out({"error": "association not established"})
        return
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    on_pending = None
    if cancel_after is not None:
        ctx = assoc.accepted_contexts[0].context_id
        on_pending = lambda n: n == cancel_after and assoc.send_c_cancel(1, ctx)
    result = retrieve_result(assoc.send_c_move(ds, dest, uid, msg_id=1), on_pending)
    assoc.release()
    out(result)


GET_MODELS = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.3",
    "study": "1.2.840.10008.5.1.4.1.2.2.3",
}


def retrieve_result(responses, on_pending=None) -> dict:
    result = {"status": None, "pending": 0, "failed_uids": []}
    for status, ident in responses:
        if status is None:
            break
        code = int(status.Status)
        if code == 0xFF00:
            result["pending"] += 1
            if on_pending:
                on_pending(result["pending"])
            continue
        result["status"] = code
        result["comment"] = str(status.get("ErrorComment", ""))
        for k, name in (("completed", "NumberOfCompletedSuboperations"),
                        ("failed", "NumberOfFailedSuboperations"),
                        ("warning", "NumberOfWarningSuboperations")):
            result[k] = int(status.get(name, 0) or 0)
        if ident is not None and "FailedSOPInstanceUIDList" in ident:
            v = ident.FailedSOPInstanceUIDList
            many = isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue"
            result["failed_uids"] = [str(x) for x in (v if many else [v])]
    return result


def cmd_get(port: int, model: str, out_dir: str, keys: dict, cancel_after=None) -> None:
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import (CTImageStorage, MRImageStorage, ComputedRadiographyImageStorage,
                                      SecondaryCaptureImageStorage, UltrasoundMultiFrameImageStorage)
    os.makedirs(out_dir, exist_ok=True)
    storage = [CTImageStorage, MRImageStorage, ComputedRadiographyImageStorage,
               SecondaryCaptureImageStorage, UltrasoundMultiFrameImageStorage]
    ae = make_ae()
    uid = GET_MODELS[model]
    ae.add_requested_context(uid)
    for cls in storage:
        ae.add_requested_context(cls, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])

    received = {}

    def on_store(event):
        raw = event.request.DataSet.getvalue()
        sop = str(event.request.AffectedSOPInstanceUID)
        ts = str(event.context.transfer_syntax)
        with open(os.path.join(out_dir, sop + ".raw"), "wb") as fh:
            fh.write(raw)
        # The same data set as a Part 10 file in the negotiated transfer syntax, for dcmtk and
        # pydicom to read.
        write_raw_file(os.path.join(out_dir, sop + ".dcm"), sop, raw,
                       str(event.request.AffectedSOPClassUID), ts)
        received[sop] = ts
        return 0x0000

    roles = [build_role(cls, scp_role=True) for cls in storage]
    assoc = ae.associate(HOST, port, ae_title="PACS", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        out({"error": "association not established"})
        return
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    on_pending = None
    if cancel_after is not None:
        ctx = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == uid)
        on_pending = lambda n: n == cancel_after and assoc.send_c_cancel(1, ctx)
    result = retrieve_result(assoc.send_c_get(ds, uid, msg_id=1), on_pending)
    assoc.release()
    result["received"] = received
    out(result)


def cmd_hold(port: int, seconds: float) -> None:
    ae = make_ae()
    ae.add_requested_context(Verification)
    assoc = ae.associate(HOST, port, ae_title="PACS")
    out({"associated": bool(assoc.is_established)})
    time.sleep(seconds)
    if assoc.is_established:
        assoc.release()


def main() -> None:
    cmd, port = sys.argv[1], int(sys.argv[2])
    rest = sys.argv[3:]
    if cmd == "echo":
        aec = rest[rest.index("--aec") + 1] if "--aec" in rest else "PACS"
        cmd_echo(port, aec)
    elif cmd == "store":
        threads = 1
        if "--threads" in rest:
            i = rest.index("--threads")
            threads = int(rest[i + 1])
            rest = rest[:i] + rest[i + 2:]
        files = []
        for p in rest:
            if os.path.isdir(p):
                files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".dcm"))
            else:
                files.append(p)
        cmd_store(port, files, threads)
    elif cmd == "bad":
        cmd_bad(port, rest[0])
    elif cmd == "raw":
        cmd_raw(port, rest[0])
    elif cmd == "find":
        cancel_after = int(rest[rest.index("--cancel-after") + 1]) if "--cancel-after" in rest else None
        pad_keys = int(rest[rest.index("--pad-keys") + 1]) if "--pad-keys" in rest else 0
        cmd_find(port, rest[0], json.loads(rest[1]), cancel_after, pad_keys, "--count-only" in rest)
    elif cmd == "move":
        cancel_after = int(rest[rest.index("--cancel-after") + 1]) if "--cancel-after" in rest else None
        cmd_move(port, rest[0], rest[1], json.loads(rest[2]), cancel_after)
    elif cmd == "get":
        cancel_after = int(rest[rest.index("--cancel-after") + 1]) if "--cancel-after" in rest else None
        cmd_get(port, rest[0], rest[1], json.loads(rest[2]), cancel_after)
    elif cmd == "hold":
        cmd_hold(port, float(rest[0]))
    else:
        raise SystemExit("unknown command " + cmd)


if __name__ == "__main__":
    main()
