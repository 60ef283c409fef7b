//! [`ModelStore`] on NATS JetStream: artifacts in the object store bucket [`OBJECT_BUCKET`], active
//! versions in the key-value bucket [`ACTIVE_BUCKET`].

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use shopmind_domain::TenantId;
use tokio::io::AsyncReadExt;
use tracing::warn;

use crate::{
    ACTIVE_BUCKET, ACTIVE_HISTORY, Active, ActiveChange, ChangeStream, ModelKey, ModelStore, OBJECT_BUCKET,
    RegistryError, Result, Revision, Version, VersionInfo, sort_versions,
};

/// Largest active record (it is a version and a few previous ones).
const MAX_ACTIVE_VALUE: i32 = 16 * 1024;

/// The registry on a NATS server with JetStream. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsModelStore {
    objects: object_store::ObjectStore,
    active: kv::Store,
}

fn nats_err(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Nats(e.to_string())
}

impl NatsModelStore {
    /// Opens the registry's buckets on `client`'s server, creating them when they do not exist.
    pub async fn open(client: async_nats::Client) -> Result<Self> {
        let js = jetstream::new(client);
        // The key-value bucket's stream, made here rather than by `create_key_value`, which
        // queries account details that servers before 2.10 describe differently. The settings
        // are those of a key-value bucket (ADR-8): one subject per key, `history` values each.
        let stream = jetstream::stream::Config {
            name: format!("KV_{ACTIVE_BUCKET}"),
            description: Some("shopmind: the active model version per <tenant>.<model>".into()),
            subjects: vec![format!("$KV.{ACTIVE_BUCKET}.>")],
            max_messages_per_subject: ACTIVE_HISTORY,
            max_message_size: MAX_ACTIVE_VALUE,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        js.get_or_create_stream(stream)
            .await
            .map_err(|e| nats_err(format!("creating the key-value bucket {ACTIVE_BUCKET}: {e}")))?;
        let active = js
            .get_key_value(ACTIVE_BUCKET)
            .await
            .map_err(|e| nats_err(format!("opening the key-value bucket {ACTIVE_BUCKET}: {e}")))?;
        let objects = match js.get_object_store(OBJECT_BUCKET).await {
            Ok(store) => store,
            Err(_) => {
                let created = js
                    .create_object_store(object_store::Config {
                        bucket: OBJECT_BUCKET.into(),
                        description: Some("shopmind: model artifacts, <tenant>/<model>/<version>".into()),
                        storage: jetstream::stream::StorageType::File,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => store,
                    // Another process may have created it in the meantime.
                    Err(e) => js.get_object_store(OBJECT_BUCKET).await.map_err(|_| {
                        nats_err(format!("opening the object store bucket {OBJECT_BUCKET}: {e}"))
                    })?,
                }
            }
        };
        Ok(Self { objects, active })
    }

    async fn entry(&self, key: &ModelKey) -> Result<Option<(Active, Revision)>> {
        let name = key.active_key();
        match self.active.entry(name.as_str()).await.map_err(nats_err)? {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok(Some((Active::from_json(&name, &e.value)?, e.revision)))
            }
            _ => Ok(None),
        }
    }
}

fn is_not_found(kind: object_store::InfoErrorKind) -> bool {
    matches!(kind, object_store::InfoErrorKind::NotFound)
}

#[async_trait::async_trait]
impl ModelStore for NatsModelStore {
    async fn put(&self, mut info: VersionInfo, bytes: Bytes) -> Result<VersionInfo> {
        info.size = bytes.len() as u64;
        let name = info.key.object_name(&info.version);
        if self.info(&info.key, &info.version).await?.is_some() {
            return Err(RegistryError::VersionExists { key: info.key, version: info.version.to_string() });
        }
        let meta = object_store::ObjectMetadata {
            name: name.clone(),
            description: Some(format!("{} {}", info.kind, info.version)),
            metadata: info.to_metadata(),
            ..Default::default()
        };
        let mut reader: &[u8] = &bytes;
        self.objects.put(meta, &mut reader).await.map_err(|e| nats_err(format!("storing {name}: {e}")))?;
        Ok(info)
    }

    async fn versions(&self, tenant: Option<&TenantId>) -> Result<Vec<VersionInfo>> {
        let prefix = tenant.map(|t| format!("{t}/"));
        let mut list = self.objects.list().await.map_err(nats_err)?;
        let mut out = Vec::new();
        while let Some(info) = list.try_next().await.map_err(nats_err)? {
            if info.deleted || prefix.as_ref().is_some_and(|p| !info.name.starts_with(p.as_str())) {
                continue;
            }
            match VersionInfo::from_metadata(&info.name, info.size as u64, &info.metadata) {
                Ok(v) => out.push(v),
                // Not ours (or damaged): listed by nobody, reported once per listing.
                Err(e) => {
                    warn!(object = %info.name, error = %e, "skipping an object that is not a model version")
                }
            }
        }
        sort_versions(&mut out);
        Ok(out)
    }

    async fn info(&self, key: &ModelKey, version: &Version) -> Result<Option<VersionInfo>> {
        let name = key.object_name(version);
        match self.objects.info(&name).await {
            Ok(info) if info.deleted => Ok(None),
            Ok(info) => VersionInfo::from_metadata(&name, info.size as u64, &info.metadata).map(Some),
            Err(e) if is_not_found(e.kind()) => Ok(None),
            Err(e) => Err(nats_err(format!("reading {name}: {e}"))),
        }
    }

    async fn get(&self, key: &ModelKey, version: &Version) -> Result<Bytes> {
        let name = key.object_name(version);
        let unknown = || RegistryError::UnknownVersion { key: key.clone(), version: version.to_string() };
        let mut object = match self.objects.get(&name).await {
            Ok(o) => o,
            Err(e) if matches!(e.kind(), object_store::GetErrorKind::NotFound) => return Err(unknown()),
            Err(e) => return Err(nats_err(format!("reading {name}: {e}"))),
        };
        let mut buf = Vec::with_capacity(object.info.size);
        // The reader checks the SHA-256 digest at the end: damaged bytes are an error here.
        object.read_to_end(&mut buf).await.map_err(|e| nats_err(format!("reading {name}: {e}")))?;
        Ok(Bytes::from(buf))
    }

    async fn delete(&self, key: &ModelKey, version: &Version) -> Result<bool> {
        if self.info(key, version).await?.is_none() {
            return Ok(false);
        }
        let name = key.object_name(version);
        self.objects.delete(&name).await.map_err(|e| nats_err(format!("deleting {name}: {e}")))?;
        Ok(true)
    }

    async fn active_entry(&self, key: &ModelKey) -> Result<Option<(Active, Revision)>> {
        self.entry(key).await
    }

    async fn actives(&self, tenant: Option<&TenantId>) -> Result<Vec<(ModelKey, Active)>> {
        let names: Vec<String> =
            self.active.keys().await.map_err(nats_err)?.try_collect().await.map_err(nats_err)?;
        let mut out = Vec::new();
        for name in names {
            let key = match ModelKey::from_active_key(&name) {
                Ok(k) => k,
                Err(e) => {
                    warn!(key = %name, error = %e, "skipping a key that is not <tenant>.<model>");
                    continue;
                }
            };
            if tenant.is_some_and(|t| &key.tenant != t) {
                continue;
            }
            if let Some((active, _)) = self.entry(&key).await? {
                out.push((key, active));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn compare_and_set_active(
        &self,
        key: &ModelKey,
        active: &Active,
        expected: Option<Revision>,
    ) -> Result<bool> {
        let name = key.active_key();
        match expected {
            None => match self.active.create(name.as_str(), active.to_json()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(nats_err(format!("setting {name}: {e}"))),
            },
            Some(rev) => match self.active.update(name.as_str(), active.to_json(), rev).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(nats_err(format!("setting {name}: {e}"))),
            },
        }
    }

    async fn watch(&self) -> Result<ChangeStream> {
        // The last value of every key, then every change.
        let watch = self.active.watch_with_history(">").await.map_err(nats_err)?;
        Ok(watch
            .filter_map(|entry| async move {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => return Some(Err(nats_err(e))),
                };
                let key = match ModelKey::from_active_key(&entry.key) {
                    Ok(k) => k,
                    Err(e) => {
                        warn!(key = %entry.key, error = %e, "ignoring a key that is not <tenant>.<model>");
                        return None;
                    }
                };
                let active = match entry.operation {
                    kv::Operation::Put => match Active::from_json(&entry.key, &entry.value) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            warn!(key = %entry.key, error = %e, "ignoring an active record that does not parse");
                            return None;
                        }
                    },
                    kv::Operation::Delete | kv::Operation::Purge => None,
                };
                Some(Ok(ActiveChange { key, active }))
            })
            .boxed())
    }

    fn kind(&self) -> &'static str {
        "nats"
    }
}
