"""pynetdicom SCU that says who its user is (DICOM User Identity negotiation, PS3.7 D.3.3.7).

usage: identity_scu.py PORT [--user NAME] [--password PW] [--jwt TOKEN] [--positive]
                            [--type N] [--get STUDY_UID]

Proposes Verification, Study Root C-FIND, C-MOVE and C-GET and CT storage (also as C-GET's SCP)
and, when established, runs a study-level C-FIND for every study (and a C-GET when asked).
Prints one JSON object:
  {"rejected": {"result", "source", "reason"}}              association rejected
  {"aborted": true}                                         association aborted
  {"established": true, "positive_response": bytes-hex or null,
   "accepted": [abstract syntax, ...], "patients": [PatientID of each study match],
   "find_status": int, "get": {"status", "completed", "received"} (with --get)}
"""
import argparse
import json

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from scu import queued_rejection
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

HOST = "127.0.0.1"
NAMES = {
    str(Verification): "verification",
    str(StudyRootQueryRetrieveInformationModelFind): "find",
    str(StudyRootQueryRetrieveInformationModelMove): "move",
    str(StudyRootQueryRetrieveInformationModelGet): "get",
    str(CTImageStorage): "ct-storage",
}


def identity(args):
    if args.jwt:
        kind, primary, secondary = 5, args.jwt, None
    elif args.password is not None:
        kind, primary, secondary = 2, args.user, args.password
    elif args.user:
        kind, primary, secondary = 1, args.user, None
    else:
        return None
    item = UserIdentityNegotiation()
    item.user_identity_type = args.type or kind
    item.primary_field = primary.encode()
    if secondary is not None:
        item.secondary_field = secondary.encode()
    item.positive_response_requested = args.positive
    return item


def rejection(assoc):
    """The A-ASSOCIATE-RJ the acceptor sent, if it sent one (also when pynetdicom reported
    it as an abort: `scu.queued_rejection`)."""
    if assoc.is_rejected:
        return assoc.acceptor.primitive
    if assoc.is_established:
        return None
    return queued_rejection(assoc)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--jwt")
    p.add_argument("--type", type=int)
    p.add_argument("--positive", action="store_true")
    p.add_argument("--get")
    args = p.parse_args()

    ae = AE(ae_title="IDSCU")
    ae.acse_timeout = 60
    ae.dimse_timeout = 60
    ae.network_timeout = 20
    for uid in NAMES:
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    ext_neg = [build_role(CTImageStorage, scp_role=True)]
    item = identity(args)
    if item is not None:
        ext_neg.append(item)

    received = []

    def on_store(event):
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    assoc = ae.associate(HOST, args.port, ae_title="PACS", ext_neg=ext_neg,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    rsp = rejection(assoc)
    if rsp is not None:
        print(json.dumps({"rejected": {"result": rsp.result, "source": rsp.result_source,
                                       "reason": rsp.diagnostic}}))
        return
    if not assoc.is_established:
        print(json.dumps({"aborted": True}))
        return

    result = {"established": True}
    response = assoc.acceptor.user_identity
    result["positive_response"] = (
        response.server_response.hex() if response is not None and response.server_response is not None
        else None
    )
    result["accepted"] = sorted(NAMES.get(str(c.abstract_syntax), str(c.abstract_syntax))
                                for c in assoc.accepted_contexts)
    if "find" in result["accepted"]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.PatientID = ""
        patients, status = [], None
        for st, ident in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if st is None:
                break
            status = int(st.Status)
            if ident is not None and status in (0xFF00, 0xFF01):
                patients.append(str(ident.get("PatientID", "")))
        result["patients"] = sorted(patients)
        result["find_status"] = status
    if args.get and "get" in result["accepted"]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = args.get
        final = {"status": None, "completed": 0}
        for st, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            if st is None:
                break
            if int(st.Status) != 0xFF00:
                final = {"status": int(st.Status),
                         "completed": int(st.get("NumberOfCompletedSuboperations", 0) or 0)}
        final["received"] = len(received)
        result["get"] = final
    assoc.release()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
