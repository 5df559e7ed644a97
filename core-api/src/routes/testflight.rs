//! `POST /v1/testflight/invitations` and `GET /v1/testflight/invitations/{id}`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use shared::domain::testflight::{parse_group_id, parse_name, NewInvitation};
use shared::domain::EmailAddress;
use shared::events::TestflightInvitationRequested;
use shared::InvitationId;

use crate::problem::ApiError;
use crate::request::{by_id, Caller, Fields, FromBody, Write};
use crate::ApiState;

impl FromBody for NewInvitation {
    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let email = fields.required("email", EmailAddress::parse);
        let first_name = fields.required("first_name", parse_name);
        let last_name = fields.required("last_name", parse_name);
        let group_id = fields.required("beta_group_id", parse_group_id);
        fields.finish(|| {
            Some(NewInvitation {
                id: InvitationId::new(),
                email: email?,
                first_name: first_name?,
                last_name: last_name?,
                group_id: group_id?,
            })
        })
    }
}

pub(crate) async fn create(write: Write<NewInvitation>, state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let invitation = &write.body;
    let envelope = write.event(TestflightInvitationRequested {
        invitation_id: invitation.id,
        email: invitation.email.clone(),
        first_name: invitation.first_name.clone(),
        last_name: invitation.last_name.clone(),
        group_id: invitation.group_id.clone(),
    });
    state.invitations.submit_invitation(write.tenant, invitation, &envelope).instrument(write.span.clone()).await?;
    Ok(HttpResponse::Accepted().json(json!({"id": invitation.id, "status": "accepted"})))
}

pub(crate) async fn get(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let invitation =
        by_id("invitation", &path, InvitationId::parse, |id| state.invitations.invitation(caller.tenant, id)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": invitation.id,
        "status": invitation.status,
        "email": invitation.email.as_str(),
        "first_name": invitation.first_name,
        "last_name": invitation.last_name,
        "beta_group_id": invitation.group_id,
        "tester_id": invitation.tester_id,
        "already_existed": invitation.already_existed,
        "failure_reason": invitation.failure_reason,
        "result_key": invitation.result_key,
        "created_at": invitation.created_at,
        "updated_at": invitation.updated_at,
    })))
}
