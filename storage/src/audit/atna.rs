//! Which DICOM audit event (PS3.15 A.5.3, codes from PS3.16 CID 400–401) an action is.

use super::model::Outcome;

/// A coded value of the DCM coding scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub code: &'static str,
    pub meaning: &'static str,
}

const fn dcm(code: &'static str, meaning: &'static str) -> Code {
    Code { code, meaning }
}

pub const APPLICATION_ACTIVITY: Code = dcm("110100", "Application Activity");
pub const AUDIT_LOG_USED: Code = dcm("110101", "Audit Log Used");
pub const INSTANCES_ACCESSED: Code = dcm("110103", "DICOM Instances Accessed");
pub const INSTANCES_TRANSFERRED: Code = dcm("110104", "DICOM Instances Transferred");
pub const STUDY_DELETED: Code = dcm("110105", "DICOM Study Deleted");
pub const EXPORT: Code = dcm("110106", "Export");
pub const IMPORT: Code = dcm("110107", "Import");
pub const QUERY: Code = dcm("110112", "Query");
pub const SECURITY_ALERT: Code = dcm("110113", "Security Alert");
pub const USER_AUTHENTICATION: Code = dcm("110114", "User Authentication");
/// Event type codes of a User Authentication event.
pub const LOGIN: Code = dcm("110122", "Login");
pub const LOGOUT: Code = dcm("110123", "Logout");

/// EventActionCode: what the event did to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionCode {
    Create,
    Read,
    Update,
    Delete,
    Execute,
}

impl ActionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionCode::Create => "C",
            ActionCode::Read => "R",
            ActionCode::Update => "U",
            ActionCode::Delete => "D",
            ActionCode::Execute => "E",
        }
    }
}

/// The audit event of `action`, from its dotted prefix. Unknown actions are Application
/// Activity, or Security Alert when refused (a refusal of something we do not classify is
/// still worth an alert).
pub fn event_for(action: &str, outcome: Outcome) -> (Code, ActionCode) {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| action.starts_with(p));
    // Deletion first: "stow.delete" or "wado.delete" delete, whatever their prefix says.
    if action.ends_with(".delete") || action == "delete" {
        (STUDY_DELETED, ActionCode::Delete)
    } else if starts(&["auth."]) {
        (USER_AUTHENTICATION, ActionCode::Execute)
    } else if starts(&["qido.", "dimse.c-find", "fhir."]) {
        (QUERY, ActionCode::Execute)
    } else if starts(&["dimse.c-get", "dimse.c-move"]) {
        (INSTANCES_TRANSFERRED, ActionCode::Read)
    } else if starts(&["wado.", "share."]) {
        (INSTANCES_ACCESSED, ActionCode::Read)
    } else if starts(&["stow.", "dimse.c-store"]) {
        (INSTANCES_TRANSFERRED, ActionCode::Create)
    } else if starts(&["import"]) {
        (IMPORT, ActionCode::Create)
    } else if starts(&["export"]) {
        (EXPORT, ActionCode::Read)
    } else if starts(&["audit."]) {
        (AUDIT_LOG_USED, ActionCode::Execute)
    } else if outcome == Outcome::Denied || starts(&["integrity."]) {
        (SECURITY_ALERT, ActionCode::Execute)
    } else {
        (APPLICATION_ACTIVITY, ActionCode::Execute)
    }
}

/// EventTypeCode refining the event, where the action says more than the EventID.
pub fn event_type_for(action: &str) -> Option<Code> {
    match action {
        "auth.login" => Some(LOGIN),
        "auth.logout" => Some(LOGOUT),
        _ => None,
    }
}

/// EventOutcomeIndicator: 0 success, 4 minor failure (refused), 8 serious failure.
pub fn outcome_indicator(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "0",
        Outcome::Denied => "4",
        Outcome::Failure => "8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_atna_maps_actions_to_events() {
        let ok = Outcome::Success;
        assert_eq!(event_for("qido.search", ok), (QUERY, ActionCode::Execute));
        assert_eq!(event_for("dimse.c-find", ok), (QUERY, ActionCode::Execute));
        assert_eq!(event_for("fhir.imagingstudy", ok).0, QUERY);
        assert_eq!(
            event_for("wado.retrieve", ok),
            (INSTANCES_ACCESSED, ActionCode::Read)
        );
        assert_eq!(
            event_for("dimse.c-move", ok),
            (INSTANCES_TRANSFERRED, ActionCode::Read)
        );
        assert_eq!(
            event_for("dimse.c-store", ok),
            (INSTANCES_TRANSFERRED, ActionCode::Create)
        );
        assert_eq!(event_for("stow.store", ok).1, ActionCode::Create);
        assert_eq!(
            event_for("study.delete", ok),
            (STUDY_DELETED, ActionCode::Delete)
        );
        assert_eq!(event_for("auth.login", ok).0, USER_AUTHENTICATION);
        assert_eq!(event_for("import", ok), (IMPORT, ActionCode::Create));
        assert_eq!(event_for("audit.read", ok).0, AUDIT_LOG_USED);
        assert_eq!(
            event_for("config.reload", Outcome::Denied).0,
            SECURITY_ALERT
        );
        assert_eq!(event_for("config.reload", ok).0, APPLICATION_ACTIVITY);
        // A refused retrieve stays a retrieve; the outcome says it was refused.
        assert_eq!(
            event_for("wado.retrieve", Outcome::Denied).0,
            INSTANCES_ACCESSED
        );
        assert_eq!(outcome_indicator(Outcome::Denied), "4");
        assert_eq!(event_type_for("auth.login"), Some(LOGIN));
    }
}
