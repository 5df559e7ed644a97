//! Named operators, for admins: `GET /v1/operators`, `POST /v1/operators` with
//! `{"name", "role"}` (201 with the token, shown only in this answer; stored as its
//! SHA-256) and `DELETE /v1/operators/{name}` (refused from the next request on).
//! `switchyard operator create|list|revoke` does the same on the store, for the first
//! one.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use core_api::request::{Body, Fields, FromBody};
use core_api::ApiError;
use shared::domain::operators::{OperatorName, OperatorRecord, Role};
use shared::Timestamp;

use crate::audit::{audited, new_operator_token, token_hash, Admin};
use crate::ConsoleState;

fn view(operator: &OperatorRecord) -> Value {
    json!({
        "name": operator.name.as_str(),
        "role": operator.role.as_str(),
        "created_at": operator.created_at,
        "revoked_at": operator.revoked_at,
    })
}

pub(crate) async fn list(_caller: Admin, state: web::Data<ConsoleState>) -> Result<HttpResponse, ApiError> {
    let operators = state.operators.operators().await?;
    Ok(HttpResponse::Ok().json(json!({"operators": operators.iter().map(view).collect::<Vec<_>>()})))
}

/// The body of `POST /v1/operators`.
pub(crate) struct NewOperator {
    name: OperatorName,
    role: Role,
}

impl FromBody for NewOperator {
    fn from_body(body: &Map<String, Value>, _: &HttpRequest) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let name = fields.required("name", OperatorName::parse);
        let role = fields.required("role", Role::parse);
        if let Some(unknown) = body.keys().find(|k| !["name", "role"].contains(&k.as_str())) {
            fields.error(unknown.clone(), "is not part of a new operator (name, role)");
        }
        fields.finish(|| Some(NewOperator { name: name?, role: role? }))
    }
}

pub(crate) async fn create(
    Admin(caller): Admin,
    Body(new): Body<NewOperator>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let target = json!({"operator": new.name.as_str(), "role": new.role.as_str()});
    audited(&state, &caller, target, None, async {
        let token = new_operator_token();
        let record = OperatorRecord {
            name: new.name,
            role: new.role,
            token_hash: token_hash(&token),
            created_at: Timestamp::now(),
            revoked_at: None,
        };
        state.operators.create_operator(&record).await?;
        tracing::info!(operator = record.name.as_str(), role = record.role.as_str(), "operator created");
        let mut answer = view(&record);
        answer["token"] = json!(token);
        Ok((HttpResponse::Created().json(answer), None))
    })
    .await
}

pub(crate) async fn revoke(
    Admin(caller): Admin,
    path: web::Path<String>,
    state: web::Data<ConsoleState>,
) -> Result<HttpResponse, ApiError> {
    let target = json!({"operator": path.as_str()});
    audited(&state, &caller, target, None, async {
        let missing = || ApiError::NotFound(format!("active operator {}", path.chars().take(64).collect::<String>()));
        let name = OperatorName::parse(&path).map_err(|_| missing())?;
        if !state.operators.revoke_operator(&name, Timestamp::now()).await? {
            return Err(missing());
        }
        tracing::info!(operator = name.as_str(), "operator revoked");
        Ok((HttpResponse::Ok().json(json!({"name": name.as_str(), "revoked": true})), Some(1)))
    })
    .await
}
