//! Conformance suites for every backend in this crate.

use std::path::PathBuf;
use std::sync::Arc;

use adapters::embedded::EmbeddedTransport;
use adapters::object_store::FilesystemObjectStore;
use adapters::testing::fresh_postgres_database;
use adapters::SqlStore;
use shared::clock::ManualClock;
use shared::config::{Secret, StoreConfig};
use shared::ports::Store;
use shared::testkit::transport::{Backend, Capabilities, Fixture};
use shared::topology::Topology;
use shared::Clock;

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let path = dir
        .path()
        .join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    let store = SqlStore::connect(&StoreConfig::Sqlite { path })
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

async fn postgres_store() -> Arc<dyn Store> {
    let url = fresh_postgres_database()
        .await
        .expect("create a test database (is PostgreSQL running?)");
    let store = SqlStore::connect(&StoreConfig::Postgres {
        url: Secret::new(url),
        max_connections: 8,
    })
    .await
    .expect("connect");
    assert_eq!(store.migrate().await.expect("migrate"), 1);
    assert_eq!(
        store.migrate().await.expect("migrate again"),
        0,
        "migrations apply once"
    );
    Arc::new(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conformance_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    shared::testkit::store::run_suite(|| sqlite_store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_conformance_postgres() {
    shared::testkit::store::run_suite(postgres_store).await;
}

struct Embedded {
    dir: tempfile::TempDir,
}

impl Embedded {
    fn path(&self, topology: &Topology) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.db", topology.instance.as_str()))
    }
}

impl Backend for Embedded {
    async fn open(&self, topology: Topology) -> Fixture {
        let clock = Arc::new(ManualClock::new());
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let transport = EmbeddedTransport::open(&self.path(&topology), &topology, dyn_clock)
            .await
            .expect("open");
        Fixture {
            transport: Arc::new(transport),
            topology,
            clock: Some(clock),
        }
    }

    async fn reopen(&self, fixture: Fixture) -> Fixture {
        let Fixture {
            transport,
            topology,
            clock,
        } = fixture;
        drop(transport);
        let dyn_clock: Arc<dyn Clock> = clock.clone().expect("clock");
        let transport = EmbeddedTransport::open(&self.path(&topology), &topology, dyn_clock)
            .await
            .expect("reopen");
        Fixture {
            transport: Arc::new(transport),
            topology,
            clock,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_conformance_embedded() {
    let backend = Embedded {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    shared::testkit::transport::run_suite(
        Capabilities {
            manual_clock: true,
            restart: true,
        },
        backend,
    )
    .await;
}

#[tokio::test]
async fn object_store_conformance_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    shared::testkit::object_store::run_suite(Arc::new(FilesystemObjectStore::new(
        dir.path().join("objects"),
    )))
    .await;
}
