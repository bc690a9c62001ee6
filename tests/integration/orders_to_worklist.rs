//! Both order paths end on the modality's screen: an order posted as FHIR ServiceRequest and
//! one sent as HL7 ORM^O01 over MLLP are answered by dcmtk `findscu -W` with their keys.

use dicom_dictionary_std::tags;

use crate::hl7::{connect, exchange, msa, orm, server_with_hl7};
use crate::orders_fhir::order;
use crate::security::curl;
use crate::support::*;
use crate::worklist::{findscu_w, step, text};

#[test]
fn orders_from_fhir_and_hl7_are_on_the_worklist() {
    let (tmp, data) = data_dir();
    let server = server_with_hl7(&data);

    // FHIR: CT chest for Jane Doe on 10 December at 09:30 (no [auth]: the caller is admin).
    let r = curl(
        &format!("http://127.0.0.1:{}/fhir/ServiceRequest", server.http_port),
        "POST",
        None,
        &[
            "-H",
            "Content-Type: application/fhir+json",
            "--data",
            &order("FHIR-1", "2026-12-10T09:30:00", "active").to_string(),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    // HL7: MR head for Alice Jones on 10 December at 10:15.
    let mut mllp = connect(&server);
    let ack = exchange(&mut mllp, &orm("W1", "NW", "SC", "MR")).expect("an ACK");
    assert_eq!(msa(&ack), "AA", "{ack}");

    let keys = [
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureCodeSequence",
        "ScheduledProcedureStepSequence[0].Modality",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20261210",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus",
    ];
    let got = findscu_w(&server, &tmp.path().join("wl"), &keys);
    let accessions: Vec<String> = got
        .iter()
        .map(|o| text(o, tags::ACCESSION_NUMBER))
        .collect();
    assert_eq!(accessions, ["FHIR-1", "HL7ACC1"], "in scheduled order");
    let expect = [
        // (patient name, ID, issuer, birth, sex, modality, time, code)
        (
            "Doe^Jane", "MRN-1", "HOSP", "19800203", "F", "CT", "093000", "24627-2",
        ),
        (
            "Jones^Alice^Q",
            "HL7P1",
            "HOSP",
            "19800101",
            "F",
            "MR",
            "101500",
            "CT-HEAD",
        ),
    ];
    for (answer, (name, id, issuer, birth, sex, modality, time, code)) in got.iter().zip(expect) {
        let acc = text(answer, tags::ACCESSION_NUMBER);
        assert_eq!(text(answer, tags::PATIENT_NAME), name, "{acc}");
        assert_eq!(text(answer, tags::PATIENT_ID), id, "{acc}");
        assert_eq!(text(answer, tags::ISSUER_OF_PATIENT_ID), issuer, "{acc}");
        assert_eq!(text(answer, tags::PATIENT_BIRTH_DATE), birth, "{acc}");
        assert_eq!(text(answer, tags::PATIENT_SEX), sex, "{acc}");
        assert!(
            text(answer, tags::STUDY_INSTANCE_UID).starts_with("2."),
            "{acc}: a Study Instance UID for the modality to use"
        );
        let sps = step(answer);
        assert_eq!(text(sps, tags::MODALITY), modality, "{acc}");
        assert_eq!(
            text(sps, tags::SCHEDULED_PROCEDURE_STEP_START_DATE),
            "20261210",
            "{acc}"
        );
        assert_eq!(
            text(sps, tags::SCHEDULED_PROCEDURE_STEP_START_TIME),
            time,
            "{acc}"
        );
        assert_eq!(
            text(sps, tags::SCHEDULED_PROCEDURE_STEP_STATUS),
            "SCHEDULED",
            "{acc}"
        );
        let procedure = answer
            .get(tags::REQUESTED_PROCEDURE_CODE_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|i| i.first())
            .unwrap_or_else(|| panic!("{acc}: no Requested Procedure Code Sequence item"));
        assert_eq!(text(procedure, tags::CODE_VALUE), code, "{acc}");
    }
}
