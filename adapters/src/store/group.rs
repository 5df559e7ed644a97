//! Group commit: writes that arrive while a writer task is busy are carried by its next
//! transaction, so a burst costs one commit (and, on SQLite's one connection, one
//! turn at the connection) instead of one each. A lone write goes out at once: nothing
//! waits to gather company.
//!
//! Semantics are those of one write at a time: a caller gets its answer only after
//! the transaction that holds its write committed; when a batch fails as a whole, its
//! writes are retried one by one, so that one bad write cannot fail its neighbours.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};

use shared::ports::StoreError;

/// What a group commit runs: a batch of writes in one transaction.
#[async_trait]
pub(crate) trait BatchWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Answer: Send + 'static;
    /// The most writes one transaction carries.
    const MAX_BATCH: usize;

    /// Applies `batch` in one transaction; answers per item, in order, once it
    /// committed.
    async fn write(&self, batch: &[&Self::Item]) -> Result<Vec<Self::Answer>, StoreError>;
}

struct Request<W: BatchWrite> {
    item: W::Item,
    reply: oneshot::Sender<Result<W::Answer, StoreError>>,
}

/// Hands writes to a few writer tasks that each commit whatever has queued up.
pub(crate) struct GroupCommit<W: BatchWrite> {
    sender: mpsc::Sender<Request<W>>,
}

impl<W: BatchWrite> GroupCommit<W> {
    /// Starts `workers` writer tasks on the current runtime. They stop when the
    /// `GroupCommit` is dropped.
    pub fn start(writer: W, workers: usize) -> Self {
        let workers = workers.max(1);
        let (sender, receiver) = mpsc::channel::<Request<W>>(W::MAX_BATCH * workers * 4);
        let (writer, receiver) = (Arc::new(writer), Arc::new(Mutex::new(receiver)));
        for _ in 0..workers {
            tokio::spawn(work(writer.clone(), receiver.clone()));
        }
        Self { sender }
    }

    /// Writes `item` with whatever else is queued; its answer once committed.
    pub async fn write(&self, item: W::Item) -> Result<W::Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::Unavailable("the store's writer stopped".into());
        self.sender.send(Request { item, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

async fn work<W: BatchWrite>(writer: Arc<W>, receiver: Arc<Mutex<mpsc::Receiver<Request<W>>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(request) => batch.push(request),
                None => return,
            }
            while batch.len() < W::MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
        }
        let items: Vec<&W::Item> = batch.iter().map(|r| &r.item).collect();
        match writer.write(&items).await {
            Ok(answers) => {
                for (request, answer) in batch.into_iter().zip(answers) {
                    let _ = request.reply.send(Ok(answer));
                }
            }
            Err(error) if batch.len() == 1 => {
                if let Some(request) = batch.pop() {
                    let _ = request.reply.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(%error, size = batch.len(), "group commit failed; writing one by one");
                for request in batch {
                    let answer = writer.write(&[&request.item]).await.and_then(|mut answers| {
                        answers.pop().ok_or_else(|| StoreError::Unavailable("the writer gave no answer".into()))
                    });
                    let _ = request.reply.send(answer);
                }
            }
        }
    }
}
