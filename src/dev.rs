//! `switchyard dev`: first-start bootstrap of a demo tenant and its credentials file.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use shared::domain::{Tenant, TenantName};
use shared::ports::StoreBackend;
use shared::{TenantId, Timestamp};

/// What `<data-dir>/dev-credentials.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevCredentials {
    pub tenant_id: TenantId,
    pub api_key: String,
    pub api_url: String,
    pub console_url: String,
    /// The control plane's operator token under `dev`.
    #[serde(default)]
    pub admin_token: String,
}

/// The operator token `dev` uses: the one in the credentials file, else a new one.
pub fn dev_admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join(CREDENTIALS_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<DevCredentials>(&text).ok())
        .map(|c| c.admin_token)
        .filter(|token| !token.is_empty())
        .unwrap_or_else(|| format!("adm_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()))
}

pub const CREDENTIALS_FILE: &str = "dev-credentials.json";

/// Creates a tenant and prints nothing; used by `dev` and `tenant create`.
pub async fn create_tenant(store: &dyn StoreBackend, name: &str) -> anyhow::Result<Tenant> {
    let name = TenantName::parse(name).map_err(anyhow::Error::msg)?;
    let tenant = Tenant { id: TenantId::new(), name, created_at: Timestamp::now() };
    store.create_tenant(&tenant).await.context("creating the tenant")?;
    Ok(tenant)
}

/// Returns the demo credentials, creating the tenant and key on first start (or when
/// the store no longer has the tenant the file names). URLs are refreshed every start.
pub async fn ensure_demo_tenant(
    store: &dyn StoreBackend,
    data_dir: &Path,
    api_url: &str,
    console_url: &str,
    admin_token: &str,
) -> anyhow::Result<(DevCredentials, bool)> {
    let path = data_dir.join(CREDENTIALS_FILE);
    let existing: Option<DevCredentials> =
        std::fs::read_to_string(&path).ok().and_then(|text| serde_json::from_str(&text).ok());
    let (mut credentials, created) = match existing {
        Some(found) if store.tenant(found.tenant_id).await?.is_some() => (found, false),
        _ => {
            let tenant = create_tenant(store, "Demo tenant").await?;
            let key = core_api::issue_api_key(store, tenant.id).await.context("creating the demo API key")?;
            let credentials = DevCredentials {
                tenant_id: tenant.id,
                api_key: key.plaintext,
                api_url: String::new(),
                console_url: String::new(),
                admin_token: String::new(),
            };
            (credentials, true)
        }
    };
    credentials.api_url = api_url.to_owned();
    credentials.console_url = console_url.to_owned();
    admin_token.clone_into(&mut credentials.admin_token);
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(&path, serde_json::to_string_pretty(&credentials)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok((credentials, created))
}
