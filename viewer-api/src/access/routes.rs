//! Which [`Action`] each HTTP route is, from its method and matched path pattern. Routes not
//! named here need an admin: new routes are closed until someone decides otherwise.

use axum::http::Method;

use super::policy::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// No identity needed and nothing to audit (health check).
    Public,
    /// Login and logout: no identity needed, but audited.
    Login(&'static str),
    /// Any authenticated caller (who am I).
    Authenticated(&'static str),
    /// Authenticated by the share token in the path.
    Share(Action),
    Guarded(Action),
}

const SEARCH_SUFFIXES: [&str; 5] = [
    "/dicom-web/studies",
    "/dicom-web/series",
    "/dicom-web/instances",
    "/studies/{study}/series",
    "/instances",
];

pub fn classify(method: &Method, pattern: &str) -> RouteKind {
    use Action::*;
    match pattern {
        "/healthz" => return RouteKind::Public,
        "/api/login" => return RouteKind::Login("auth.login"),
        "/api/logout" => return RouteKind::Login("auth.logout"),
        "/api/whoami" => return RouteKind::Authenticated("auth.whoami"),
        _ => {}
    }
    if pattern.starts_with("/api/research/{token}") {
        return RouteKind::Share(ResearchDownload);
    }
    if let Some(rest) = pattern.strip_prefix("/api/share/{token}") {
        return RouteKind::Share(if rest.ends_with("/thumbnail") {
            Thumbnail
        } else {
            ShareView
        });
    }
    if pattern.starts_with("/dicom-web/") {
        return RouteKind::Guarded(dicomweb_action(method, pattern));
    }
    if pattern == crate::dicomweb::wado_uri::PATH {
        // A rendering unless the query asks for the object: the guard decides from the query
        // (`wado_uri::wants_dicom`).
        return RouteKind::Guarded(Rendered);
    }
    let action = if pattern == crate::fhir_merge::PATH || pattern == "/api/patients/merge" {
        MergePatients
    } else if pattern.starts_with("/fhir/ServiceRequest") {
        if method == Method::GET {
            ReadOrders
        } else {
            PlaceOrder
        }
    } else if pattern == "/api/worklist/mwl" {
        ReadWorklist
    } else if pattern.starts_with("/fhir/") {
        FhirRead
    } else if pattern.starts_with("/api/audit") {
        Audit
    } else if pattern.starts_with("/api/changefeed") {
        ChangeFeed
    } else if pattern == "/api/outbox" || pattern.starts_with("/api/events") {
        Deliveries
    } else if pattern.ends_with("/flags") {
        if method == Method::GET {
            ReadFlags
        } else {
            PostFlags
        }
    } else if pattern.ends_with("/read") {
        MarkRead
    } else if pattern == "/api/worklist" {
        Worklist
    } else {
        IndexAdmin
    };
    RouteKind::Guarded(action)
}

fn dicomweb_action(method: &Method, pattern: &str) -> Action {
    use Action::*;
    if method == Method::POST {
        return Store;
    }
    if method == Method::DELETE {
        return Delete;
    }
    if pattern.ends_with("/metadata") {
        Metadata
    } else if pattern.contains("/bulk/") {
        BulkData
    } else if pattern.ends_with("/rendered") {
        Rendered
    } else if pattern.ends_with("/thumbnail") {
        Thumbnail
    } else if pattern.contains("/frames/") {
        Frames
    } else if SEARCH_SUFFIXES.iter().any(|s| pattern.ends_with(s)) {
        Search
    } else {
        Retrieve
    }
}

/// Path parameters by name, by laying the pattern over the path segment by segment.
pub fn path_params<'a>(pattern: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(p, v)| {
            let name = p.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.trim_start_matches('*'), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicomweb_routes_map_to_actions() {
        let i = "/dicom-web/studies/{study}/series/{series}/instances/{instance}";
        let cases = [
            (
                Method::GET,
                "/dicom-web/studies".to_string(),
                Action::Search,
            ),
            (Method::POST, "/dicom-web/studies".into(), Action::Store),
            (
                Method::GET,
                "/dicom-web/studies/{study}/series".into(),
                Action::Search,
            ),
            (
                Method::GET,
                "/dicom-web/studies/{study}/series/{series}/instances".into(),
                Action::Search,
            ),
            (
                Method::GET,
                "/dicom-web/studies/{study}".into(),
                Action::Retrieve,
            ),
            (Method::GET, i.to_string(), Action::Retrieve),
            (Method::DELETE, i.to_string(), Action::Delete),
            (Method::GET, format!("{i}/metadata"), Action::Metadata),
            (
                Method::GET,
                format!("{i}/frames/{{frames}}"),
                Action::Frames,
            ),
            (
                Method::GET,
                format!("{i}/frames/{{frames}}/rendered"),
                Action::Rendered,
            ),
            (Method::GET, format!("{i}/bulk/{{*path}}"), Action::BulkData),
            (
                Method::GET,
                "/dicom-web/studies/{study}/thumbnail".into(),
                Action::Thumbnail,
            ),
        ];
        for (m, p, a) in cases {
            assert_eq!(classify(&m, &p), RouteKind::Guarded(a), "{m} {p}");
        }
    }

    #[test]
    fn api_routes_default_to_admin_only() {
        assert_eq!(
            classify(&Method::GET, "/api/something-new"),
            RouteKind::Guarded(Action::IndexAdmin)
        );
        assert_eq!(
            classify(&Method::POST, "/api/studies/{study}/flags"),
            RouteKind::Guarded(Action::PostFlags)
        );
        assert_eq!(
            classify(&Method::GET, "/api/share/{token}/series/{series}/thumbnail"),
            RouteKind::Share(Action::Thumbnail)
        );
        assert_eq!(classify(&Method::GET, "/healthz"), RouteKind::Public);
        assert_eq!(
            classify(&Method::PUT, "/fhir/ServiceRequest/{id}"),
            RouteKind::Guarded(Action::PlaceOrder)
        );
        assert_eq!(
            classify(&Method::GET, "/fhir/ServiceRequest"),
            RouteKind::Guarded(Action::ReadOrders)
        );
        assert_eq!(
            classify(&Method::GET, "/api/worklist/mwl"),
            RouteKind::Guarded(Action::ReadWorklist)
        );
        assert_eq!(
            classify(&Method::GET, "/api/worklist"),
            RouteKind::Guarded(Action::Worklist)
        );
    }

    #[test]
    fn params_come_from_the_pattern() {
        let p = path_params(
            "/dicom-web/studies/{study}/series/{series}/bulk/{*path}",
            "/dicom-web/studies/1.2/series/3.4/bulk/7FE00010",
        );
        assert_eq!(
            p,
            vec![("study", "1.2"), ("series", "3.4"), ("path", "7FE00010")]
        );
    }
}
