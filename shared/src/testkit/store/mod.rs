//! The store conformance suite: one module of scenarios per store port, each scenario
//! its own test per backend (`store_conformance!`).
//!
//! A scenario gets a fresh, empty, migrated backend and may use the other ports to set
//! itself up (tenants, events).

pub mod access;
pub mod analytics;
pub mod emails;
pub mod events;
pub mod feedback;
pub mod health;
pub mod inbox;
pub mod invitations;
pub mod journeys;
pub mod operators;
pub mod outbox;
pub mod parking;
pub mod plans;
pub mod tenants;
pub mod webhooks;

use serde_json::{json, Map, Value};

use crate::clock::Timestamp;
use crate::domain::{EmailAddress, FeedbackMessage, NewFeedback, Rating, Tenant, TenantName};
use crate::envelope::{EventEnvelope, EventType, Service};
use crate::ids::{FeedbackId, TenantId};
use crate::ports::StoreBackend;

/// Expands to one `#[tokio::test]` per store scenario, in a module per port, each on a
/// fresh backend from `$open` (an async fn returning `(Arc<dyn StoreBackend>, guard)`;
/// the guard lives as long as the test, e.g. a temporary directory).
///
/// ```ignore
/// mod sqlite { shared::store_conformance!(crate::open_sqlite); }
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($open:path) => {
        $crate::store_conformance!(@ports $open;
            tenants { directory, api_keys, settings, concurrent_setting_changes_all_land, tenants_are_paged_and_searched }
            webhooks { secrets_per_tenant_and_source, received_webhooks_are_listed_per_tenant_in_pages }
            events {
                idempotent_append, concurrent_appends_with_one_key, a_failing_append_spares_its_neighbours,
                another_tenants_envelope_is_refused
            }
            outbox {
                claim_publish_and_lease, each_tenant_stays_in_order, a_tenants_backlog_does_not_hold_back_another_tenant,
                two_claimers_never_share_a_row, wake_up_is_level_triggered
            }
            inbox { applies_an_event_once_per_consumer, concurrent_applies_stay_separate, concurrent_completions_each_keep_their_own }
            feedback { tenant_scoped_statuses, concurrent_submissions_each_stand_alone }
            emails { campaigns_sends_and_outcomes, a_campaign_is_all_or_nothing, concurrent_send_starts_are_each_once }
            analytics { batches_staging_claims_and_writes }
            access { tickets_pending_decisions_and_reminders, imported_requests_keep_their_tickets_and_the_sequence_continues }
            invitations { tenant_scoped_with_outcome }
            health { latest_report_per_process, dead_letters_after_a_cursor_since_a_time }
            parking { parks_once_and_lists_newest_first, groups_errors_that_differ_only_in_values }
            journeys { an_events_records_are_found_by_its_id_for_its_tenant_only }
            operators { operators_are_named_found_by_token_and_revoked, the_audit_log_lists_newest_first_by_filter }
            plans {
                a_plan_freezes_its_selection, a_plan_is_confirmed_once_and_only_in_time,
                a_job_is_leased_stepped_and_taken_over, a_cancelled_job_stays_cancelled,
                purge_restore_and_retention, failed_outbox_rows_are_listed_retried_and_discarded
            }
        );
    };
    (@ports $open:path; $($port:ident { $($scenario:ident),* $(,)? })*) => {
        $(
            mod $port {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $scenario() {
                        let (store, _guard) = $open().await;
                        $crate::testkit::store::$port::$scenario(store).await;
                    }
                )*
            }
        )*
    };
}

pub async fn tenant(store: &dyn StoreBackend, name: &str) -> Tenant {
    let tenant =
        Tenant { id: TenantId::new(), name: TenantName::parse(name).expect("name"), created_at: Timestamp::now() };
    store.create_tenant(&tenant).await.expect("create tenant");
    tenant
}

/// A platform event of `tenant` with `data: {"n": 1}`.
pub fn envelope(tenant: TenantId, event_type: &str, key: Option<&str>) -> EventEnvelope {
    let mut data = Map::new();
    data.insert("n".into(), Value::from(1));
    let mut envelope = EventEnvelope::new(tenant, Service::CoreApi, EventType::parse(event_type).expect("type"), data);
    envelope.idempotency_key = key.map(str::to_owned);
    envelope
}

/// An event of `tenant` with no data.
pub fn event(tenant: TenantId, event_type: &str) -> EventEnvelope {
    EventEnvelope::new(tenant, Service::CoreApi, EventType::parse(event_type).expect("type"), Map::new())
}

/// An invitation of Tess Ter (`tess@example.com`) to `group-1`.
pub fn new_invitation() -> crate::domain::testflight::NewInvitation {
    crate::domain::testflight::NewInvitation {
        id: crate::ids::InvitationId::new(),
        email: EmailAddress::parse("tess@example.com").expect("email"),
        first_name: "Tess".into(),
        last_name: "Ter".into(),
        group_id: "group-1".into(),
    }
}

pub fn new_feedback() -> NewFeedback {
    NewFeedback {
        id: FeedbackId::new(),
        rating: Some(Rating::parse(4).expect("rating")),
        message: FeedbackMessage::parse("Love it").expect("message"),
        contact_email: Some(EmailAddress::parse("ana@example.com").expect("email")),
        metadata: json!({"app_version": "1.2.3"}).as_object().cloned().unwrap_or_default(),
    }
}
