//! Orders still on the worklist follow a patient merge, whichever way it came (API, FHIR
//! `$merge`, HL7 A40), so the modality picks the surviving patient for images not yet taken.

use super::CorrectionError;
use crate::orders::{OrderChange, OrderPatient};
use crate::store::Store;

/// Active orders placed for the patient `prior_id` (of `prior_issuer`; empty: any issuer)
/// take the surviving patient; each is written only if unchanged since it was read (a
/// concurrent change wins and is logged). Returns how many were moved.
pub fn follow_orders(
    store: &Store,
    prior_id: &str,
    prior_issuer: &str,
    surviving: &OrderPatient,
    now_ms: u64,
) -> Result<usize, CorrectionError> {
    let mut affected = Vec::new();
    store.orders.active_orders(None, None, &mut |o| {
        if o.patient.id == prior_id && (prior_issuer.is_empty() || o.patient.issuer == prior_issuer)
        {
            affected.push(o);
        }
        true
    })?;
    let mut moved = 0;
    for mut order in affected {
        let expected = order.updated_ms;
        order.patient.id.clone_from(&surviving.id);
        order.patient.issuer.clone_from(&surviving.issuer);
        for (field, value) in [
            (&mut order.patient.name, &surviving.name),
            (&mut order.patient.birth_date, &surviving.birth_date),
            (&mut order.patient.sex, &surviving.sex),
        ] {
            if !value.is_empty() {
                field.clone_from(value);
            }
        }
        order.updated_ms = now_ms.max(expected + 1);
        if store
            .orders
            .put_order(&order, OrderChange::Changed, Some(expected))?
        {
            moved += 1;
        } else {
            tracing::warn!(accession = %order.accession_number, "order changed meanwhile; not moved to the surviving patient");
        }
    }
    if moved > 0 {
        tracing::info!(moved, prior = %prior_id, surviving = %surviving.id, "orders follow the merge");
    }
    Ok(moved)
}
