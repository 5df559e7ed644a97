//! Conformance suites for every backend in this crate.

mod app_store_connect;
mod aws;
mod providers;

use std::path::PathBuf;
use std::sync::Arc;

use adapters::embedded::EmbeddedTransport;
use adapters::object_store::FilesystemObjectStore;
use adapters::testing::fresh_postgres_database;
use adapters::SqlStore;
use shared::clock::ManualClock;
use shared::config::{Secret, StoreConfig};
use shared::ports::StoreBackend;
use shared::testkit::transport::{Backend, Capabilities, Fixture};
use shared::topology::Topology;
use shared::Clock;

/// A fresh, migrated SQLite store in its own temporary directory (the guard).
pub async fn sqlite_store() -> (Arc<dyn StoreBackend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqlStore::connect(&StoreConfig::Sqlite { path: dir.path().join("store.db") }).await.expect("connect");
    store.migrate().await.expect("migrate");
    (Arc::new(store), dir)
}

async fn postgres_config() -> StoreConfig {
    let url = fresh_postgres_database().await.expect("create a test database (is PostgreSQL running?)");
    StoreConfig::Postgres {
        url: Secret::new(url),
        max_connections: 8,
        acquire_timeout: std::time::Duration::from_secs(2),
    }
}

/// A fresh, migrated PostgreSQL store in a database of its own.
pub async fn postgres_store() -> (Arc<dyn StoreBackend>, ()) {
    let store = SqlStore::connect(&postgres_config().await).await.expect("connect");
    store.migrate().await.expect("migrate");
    (Arc::new(store), ())
}

mod store_on_sqlite {
    shared::store_conformance!(crate::sqlite_store);
}

mod store_on_postgres {
    shared::store_conformance!(crate::postgres_store);
}

#[tokio::test]
async fn migrations_apply_once_on_each_dialect() {
    let postgres = SqlStore::connect(&postgres_config().await).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = SqlStore::connect(&StoreConfig::Sqlite { path: dir.path().join("store.db") }).await.expect("connect");
    for store in [postgres, sqlite] {
        assert_eq!(store.migrate().await.expect("migrate"), 19, "{:?}", store.dialect());
        assert_eq!(store.migrate().await.expect("migrate again"), 0, "migrations apply once");
    }
}

struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    fn path(&self, topology: &Topology) -> PathBuf {
        self.dir.path().join(format!("{}.db", topology.instance.as_str()))
    }
}

impl Backend for Embedded {
    async fn open(&self, topology: Topology) -> Fixture {
        let clock = Arc::new(ManualClock::new());
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let transport = EmbeddedTransport::open(&self.path(&topology), &topology, dyn_clock).await.expect("open");
        Fixture { transport: Arc::new(transport), topology, clock: Some(clock) }
    }

    async fn reopen(&self, fixture: Fixture) -> Fixture {
        let Fixture { transport, topology, clock } = fixture;
        drop(transport);
        let dyn_clock: Arc<dyn Clock> = clock.clone().expect("clock");
        let transport = EmbeddedTransport::open(&self.path(&topology), &topology, dyn_clock).await.expect("reopen");
        Fixture { transport: Arc::new(transport), topology, clock }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_conformance_embedded() {
    let backend = Embedded { dir: tempfile::tempdir().expect("tempdir") };
    shared::testkit::transport::run_suite(
        Capabilities { manual_clock: true, restart: true, fair_lanes: true },
        backend,
    )
    .await;
}

#[tokio::test]
async fn object_store_conformance_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    shared::testkit::object_store::run_suite(Arc::new(FilesystemObjectStore::new(dir.path().join("objects")))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_a_relay_in_another_process_through_listen_notify() {
    use shared::domain::{Tenant, TenantName};
    use shared::{EventEnvelope, EventType, Service, TenantId, Timestamp};

    let url = fresh_postgres_database().await.expect("test database");
    let config = StoreConfig::Postgres {
        url: Secret::new(url),
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(2),
    };
    let relay = SqlStore::connect(&config).await.expect("connect");
    relay.migrate().await.expect("migrate");
    let relay_side: Arc<dyn StoreBackend> = Arc::new(relay);
    let api_side: Arc<dyn StoreBackend> = Arc::new(SqlStore::connect(&config).await.expect("connect"));

    // The first wait starts the listener (and may return at once for rows it could have missed).
    let _ = tokio::time::timeout(std::time::Duration::from_millis(500), relay_side.wait_for_outbox()).await;
    let waiter = {
        let store = relay_side.clone();
        tokio::spawn(async move { store.wait_for_outbox().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "nothing was inserted yet");

    let tenant =
        Tenant { id: TenantId::new(), name: TenantName::parse("Acme").expect("name"), created_at: Timestamp::now() };
    api_side.create_tenant(&tenant).await.expect("tenant");
    let envelope = EventEnvelope::new(
        tenant.id,
        Service::CoreApi,
        EventType::parse("order.placed").expect("type"),
        Default::default(),
    );
    api_side.append_event(envelope.tenant_id, &envelope).await.expect("append");
    shared::testkit::within(std::time::Duration::from_secs(5), "a NOTIFY from the other store", waiter)
        .await
        .expect("join");
}

/// A stored envelope that no longer reads back (written before a limit existed, or
/// damaged) fails that row with its reason and holds back no one, not even its tenant.
async fn an_unreadable_outbox_row_fails_alone(store: &dyn StoreBackend, raw_url: &str) {
    use shared::domain::{Tenant, TenantName};
    use shared::{EventEnvelope, EventType, Service, TenantId, Timestamp};

    let mut tenants = Vec::new();
    for name in ["Acme", "Globex"] {
        let tenant =
            Tenant { id: TenantId::new(), name: TenantName::parse(name).expect("name"), created_at: Timestamp::now() };
        store.create_tenant(&tenant).await.expect("tenant");
        tenants.push(tenant.id);
    }
    let event = |tenant| {
        EventEnvelope::new(
            tenant,
            Service::CoreApi,
            EventType::parse("order.placed").expect("type"),
            Default::default(),
        )
    };
    let (bad, after, other) = (event(tenants[0]), event(tenants[0]), event(tenants[1]));
    for envelope in [&bad, &after, &other] {
        store.append_event(envelope.tenant_id, envelope).await.expect("append");
    }
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(raw_url).await.expect("raw connection");
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    sqlx::query(&format!("UPDATE outbox SET envelope = '{{\"data\": {deep}}}' WHERE event_id = '{}'", bad.id))
        .execute(&raw)
        .await
        .expect("damage the row");
    raw.close().await;

    let claimed = store.claim_outbox(10, std::time::Duration::from_secs(30)).await.expect("the claim still works");
    let ids: Vec<String> = claimed.iter().map(|e| e.envelope.id.to_string()).collect();
    assert_eq!(ids, [after.id.to_string(), other.id.to_string()], "the rest of its tenant and the other tenant go on");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 2, "the unreadable row is failed, not pending");
    store.mark_published(&claimed.iter().map(|e| e.seq).collect::<Vec<_>>()).await.expect("published");
    assert!(store.claim_outbox(10, std::time::Duration::from_secs(30)).await.expect("claim").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_outbox_row_fails_alone_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let store = SqlStore::connect(&StoreConfig::Sqlite { path: path.clone() }).await.expect("connect");
    store.migrate().await.expect("migrate");
    an_unreadable_outbox_row_fails_alone(&store, &format!("sqlite://{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_outbox_row_fails_alone_on_postgres() {
    let url = fresh_postgres_database().await.expect("test database");
    let config = StoreConfig::Postgres {
        url: Secret::new(url.clone()),
        max_connections: 4,
        acquire_timeout: std::time::Duration::from_secs(2),
    };
    let store = SqlStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    an_unreadable_outbox_row_fails_alone(&store, &url).await;
}

/// A transport file written before queues kept a `groups` table opens with every
/// message kept: queued ones are received, an in-flight one stays held until its
/// visibility ends and then comes back, in its group's order.
#[tokio::test]
async fn an_embedded_transport_file_of_the_first_layout_is_upgraded_in_place() {
    use shared::ports::{ReceiveOptions, Transport};
    use shared::topology::{Environment, InstanceName, UseCase};
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("transport.db");
    let topology =
        Topology::new(InstanceName::parse("upgrade").expect("name"), Environment::Production).expect("topology");
    let queue = topology.queue(UseCase::Feedback).name.clone();
    let clock = Arc::new(ManualClock::new());
    let now = clock.now().as_millis();
    {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("old file");
        sqlx::raw_sql(
            "CREATE TABLE messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
                group_id TEXT NOT NULL, dedup_id TEXT NOT NULL, body TEXT NOT NULL, attributes TEXT NOT NULL,
                sent_at INTEGER NOT NULL, visible_at INTEGER NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0,
                receipt TEXT);
             CREATE INDEX messages_queue ON messages (queue, seq);
             CREATE INDEX messages_in_flight ON messages (queue, visible_at) WHERE receipt IS NOT NULL;
             CREATE INDEX messages_receipt ON messages (receipt);
             CREATE INDEX messages_sent ON messages (queue, sent_at);
             CREATE TABLE dedup (scope TEXT NOT NULL, dedup_id TEXT NOT NULL, expires_at INTEGER NOT NULL,
                PRIMARY KEY (scope, dedup_id));",
        )
        .execute(&pool)
        .await
        .expect("first layout");
        for (id, group, visible_at, receipt, count) in [
            ("g1", "ten_1", now + 60_000, Some("old-receipt"), 1),
            ("g2", "ten_1", now, None, 0),
            ("h1", "ten_2", now, None, 0),
        ] {
            sqlx::query(
                "INSERT INTO messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at, visible_at,
                 receive_count, receipt) VALUES (?1, ?2, ?3, ?2, '{}', '{}', ?4, ?5, ?6, ?7)",
            )
            .bind(&queue)
            .bind(id)
            .bind(group)
            .bind(now)
            .bind(visible_at)
            .bind(count)
            .bind(receipt)
            .execute(&pool)
            .await
            .expect("old message");
        }
        pool.close().await;
    }

    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let transport = EmbeddedTransport::open(&path, &topology, dyn_clock).await.expect("upgrade");
    let quick = ReceiveOptions { max_messages: 10, wait: Duration::ZERO, visibility_timeout: None };
    let ids = |batch: &[shared::ports::ReceivedMessage]| batch.iter().map(|m| m.dedup_id.clone()).collect::<Vec<_>>();
    let first = transport.receive(&queue, quick).await.expect("receive");
    assert_eq!(ids(&first), ["h1"], "the group with a message in flight stays held");
    clock.advance(Duration::from_secs(61));
    let second = transport.receive(&queue, quick).await.expect("receive");
    assert_eq!(ids(&second), ["g1", "g2"], "after its visibility the group goes on in order");
    assert_eq!(second[0].receive_count, 2, "receive counts are kept");
    let receipts: Vec<_> = first.iter().chain(&second).map(|m| m.receipt.clone()).collect();
    transport.ack(&queue, &receipts).await.expect("ack");
    assert!(transport.receive(&queue, quick).await.expect("receive").is_empty());
    drop(transport);
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    EmbeddedTransport::open(&path, &topology, dyn_clock).await.expect("an upgraded file opens again");
}
