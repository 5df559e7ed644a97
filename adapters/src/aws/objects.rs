//! The object-store port on S3.

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::primitives::ByteStream;

use shared::ports::{ObjectStore, ObjectStoreError};
use shared::ObjectKey;

use super::{classify, describe, ApiCallCounter, Failure};

pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

fn error<E>(error: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> ObjectStoreError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(&error) {
        Failure::Unavailable | Failure::Throttled => ObjectStoreError::Unavailable(describe(&error).into()),
        Failure::Missing | Failure::Rejected => ObjectStoreError::Other(describe(&error).into()),
    }
}

impl S3ObjectStore {
    /// `force_path_style` is needed for endpoints without bucket subdomains (IP
    /// addresses, local servers).
    pub fn new(config: &SdkConfig, bucket: impl Into<String>) -> Self {
        Self::build(config, bucket.into(), None)
    }

    /// Like `new`, counting every API call in `counter`.
    pub fn counted(config: &SdkConfig, bucket: impl Into<String>, counter: &ApiCallCounter) -> Self {
        Self::build(config, bucket.into(), Some(counter))
    }

    fn build(config: &SdkConfig, bucket: String, counter: Option<&ApiCallCounter>) -> Self {
        let mut s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
        if let Some(counter) = counter {
            s3 = s3.interceptor(counter.clone());
        }
        Self { client: aws_sdk_s3::Client::from_conf(s3.build()), bucket }
    }

    /// Creates the bucket if it does not exist (tests and local servers only).
    pub async fn ensure_bucket(&self) -> Result<(), ObjectStoreError> {
        if self.client.head_bucket().bucket(&self.bucket).send().await.is_ok() {
            return Ok(());
        }
        self.client.create_bucket().bucket(&self.bucket).send().await.map_err(error)?;
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &ObjectKey, body: Vec<u8>, content_type: &str) -> Result<(), ObjectStoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn get(&self, key: &ObjectKey) -> Result<Option<Vec<u8>>, ObjectStoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(output) => {
                let bytes = output.body.collect().await.map_err(|e| ObjectStoreError::Unavailable(Box::new(e)))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(error(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectKey>, ObjectStoreError> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            for object in page.map_err(error)?.contents() {
                if let Some(key) = object.key().and_then(|k| ObjectKey::parse(k).ok()) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}
