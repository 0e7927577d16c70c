//! The adapters a server holds, by id: loaded once against the shared model
//! and switched on per request at the request's scale, never globally.

use super::error::ApiError;
use crate::assistant::Assistant;
use crate::model::adapter_scope::{ActiveAdapter, ScopedAdapter};
use crate::model::peft::AdapterSpec;
use anyhow::{bail, Context, Result};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// `NAME=DIR[:SCALE]` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedAdapter {
    pub id: String,
    pub spec: AdapterSpec,
}

impl std::str::FromStr for NamedAdapter {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let Some((id, rest)) = text.split_once('=') else { bail!("expected NAME=DIR[:SCALE], got `{text}`") };
        check_id(id)?;
        let spec: AdapterSpec = rest.parse().expect("AdapterSpec parsing is infallible");
        check_scale(spec.scale)?;
        Ok(Self { id: id.to_string(), spec })
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("an adapter id is 1-64 letters, digits, `-`, `_` or `.`; got `{id}`");
    }
    Ok(())
}

/// Scales beyond this only blow a model up; a typo is the likelier cause.
const MAX_SCALE: f64 = 10.0;

fn check_scale(scale: f64) -> Result<()> {
    if !scale.is_finite() || scale.abs() > MAX_SCALE {
        bail!("an adapter scale must be a number between -{MAX_SCALE} and {MAX_SCALE}, got {scale}");
    }
    Ok(())
}

struct Served {
    adapter: Arc<ScopedAdapter>,
    path: PathBuf,
    /// Applied when a request names no adapters.
    default_scale: f64,
}

/// A request's choice of adapter: `{"id": NAME, "scale": S}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterChoice {
    pub id: String,
    pub scale: Option<f64>,
}

/// What `GET /adapters` lists for each adapter.
#[derive(Debug, Serialize)]
pub struct AdapterInfo {
    pub id: String,
    pub path: PathBuf,
    pub scale: f64,
}

pub struct AdapterRegistry {
    served: RwLock<BTreeMap<String, Served>>,
}

impl AdapterRegistry {
    pub fn new() -> Self {
        Self { served: RwLock::new(BTreeMap::new()) }
    }

    /// Reads and prepares an adapter directory (blocking: reads files).
    pub fn load(&self, assistant: &Assistant, named: &NamedAdapter) -> Result<(), ApiError> {
        check_id(&named.id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
        check_scale(named.spec.scale).map_err(|e| ApiError::invalid("scale", e.to_string()))?;
        if self.served.read().expect("adapter registry poisoned").contains_key(&named.id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("an adapter with id `{}` is already loaded", named.id),
            ));
        }
        let prepared = assistant
            .read_adapter(&named.spec.path)
            .and_then(|adapter| assistant.prepare_adapter(&adapter, &named.id))
            .with_context(|| format!("cannot load adapter `{}`", named.id))
            .map_err(|e| ApiError::invalid("path", format!("{e:#}")))?;
        let served = Served { adapter: prepared, path: named.spec.path.clone(), default_scale: named.spec.scale };
        let mut map = self.served.write().expect("adapter registry poisoned");
        if map.contains_key(&named.id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("an adapter with id `{}` is already loaded", named.id),
            ));
        }
        map.insert(named.id.clone(), served);
        Ok(())
    }

    /// The adapters a request runs with: those it names at their scales
    /// (the loaded scale when it gives none), or every loaded adapter at its
    /// loaded scale when it names none.
    pub fn resolve(&self, chosen: Option<&[AdapterChoice]>) -> Result<Vec<ActiveAdapter>, ApiError> {
        let served = self.served.read().expect("adapter registry poisoned");
        let Some(chosen) = chosen else {
            return Ok(served.values().map(|s| (s.adapter.clone(), s.default_scale)).collect());
        };
        let mut active: Vec<ActiveAdapter> = Vec::new();
        for choice in chosen {
            let Some(entry) = served.get(&choice.id) else {
                let known: Vec<&str> = served.keys().map(String::as_str).collect();
                return Err(ApiError::invalid(
                    "adapters",
                    format!("unknown adapter `{}`; loaded: [{}]", choice.id, known.join(", ")),
                ));
            };
            if active.iter().any(|(a, _)| Arc::ptr_eq(a, &entry.adapter)) {
                return Err(ApiError::invalid("adapters", format!("adapter `{}` is named twice", choice.id)));
            }
            let scale = choice.scale.unwrap_or(entry.default_scale);
            check_scale(scale).map_err(|e| ApiError::invalid("adapters", e.to_string()))?;
            active.push((entry.adapter.clone(), scale));
        }
        Ok(active)
    }

    pub fn list(&self) -> Vec<AdapterInfo> {
        let served = self.served.read().expect("adapter registry poisoned");
        served
            .iter()
            .map(|(id, s)| AdapterInfo { id: id.clone(), path: s.path.clone(), scale: s.default_scale })
            .collect()
    }
}

impl Default for AdapterRegistry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_adapters_parse_and_bad_ones_are_refused() {
        let named: NamedAdapter = "alice=/tmp/adapters/alice:0.5".parse().unwrap();
        assert_eq!((named.id.as_str(), named.spec.scale), ("alice", 0.5));
        assert_eq!(named.spec.path, PathBuf::from("/tmp/adapters/alice"));
        assert!("no-equals-sign".parse::<NamedAdapter>().is_err());
        assert!("bad id=/tmp/x".parse::<NamedAdapter>().is_err());
        assert!("x=/tmp/x:99".parse::<NamedAdapter>().is_err());
    }

    #[test]
    fn a_request_may_name_only_loaded_adapters_once_each() {
        let registry = AdapterRegistry::new();
        assert!(registry.resolve(None).unwrap().is_empty());
        let err = registry.resolve(Some(&[AdapterChoice { id: "nobody".into(), scale: None }])).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
