//! The config in force and the TLS material built from it, swapped whole
//! on reload (SIGHUP): a request is judged under the one snapshot in force
//! when its head arrived.

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Config;
use crate::tls;

/// State shared by every connection.
pub struct Shared {
    /// The config and TLS material in force; SIGHUP puts a new snapshot
    /// here. Each exchange takes one and uses it from start to end.
    pub current: watch::Receiver<Arc<Snapshot>>,
}

impl Shared {
    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }
}

/// A config with the TLS acceptor and connector built from it, swapped as
/// one so a request never sees a config with another config's certificates.
pub struct Snapshot {
    /// The config.
    pub config: Arc<Config>,
    /// Terminates clients' TLS; `None` when no certificate source is
    /// configured at all (no guard CA, no instance `cert`), and then every
    /// TLS client is refused.
    pub acceptor: Option<Arc<tls::Acceptor>>,
    /// Opens TLS connections to the instances reached over TLS.
    pub connector: Arc<tls::Connector>,
}

impl Snapshot {
    /// Builds the acceptor and connector for `config`; any TLS problem
    /// refuses the whole config, so a reload keeps the old snapshot.
    pub fn build(config: Config) -> Result<Snapshot, tls::Errors> {
        let t = &config.guard.tls;
        let has_certificates = t.ca_cert.is_some()
            || t.ca_key.is_some()
            || config
                .instances
                .iter()
                .any(|i| i.settings.tls.cert.is_some() || i.settings.tls.key.is_some());
        let acceptor = if has_certificates {
            Some(tls::Acceptor::new(t, &config.instances))
        } else {
            None
        };
        let connector = tls::Connector::new(t, &config.instances);
        let (acceptor, connector) = match (acceptor.transpose(), connector) {
            (Ok(a), Ok(c)) => (a, c),
            (a, c) => {
                let mut all = Vec::new();
                if let Err(tls::Errors(e)) = a {
                    all.extend(e);
                }
                if let Err(tls::Errors(e)) = c {
                    all.extend(e);
                }
                return Err(tls::Errors(all));
            }
        };
        if acceptor.is_none() && config.instances.iter().any(|i| i.settings.tls.upstream) {
            tracing::warn!(
                "no guard.tls.ca_cert/ca_key and no instance tls.cert: \
                 TLS from clients is refused; only plain HTTP can be relayed"
            );
        }
        Ok(Snapshot {
            config: Arc::new(config),
            acceptor: acceptor.map(Arc::new),
            connector: Arc::new(connector),
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A config with one instance on `port` and `guard.tls` as given.
    pub(in crate::relay) fn config(
        port: u16,
        tls: serde_json::Value,
        instance_tls: serde_json::Value,
    ) -> Config {
        let v = config_json(port, tls, instance_tls);
        Config::from_json_str(&v.to_string()).unwrap().0
    }

    /// [`config`] as JSON, to change before parsing.
    pub(in crate::relay) fn config_json(
        port: u16,
        tls: serde_json::Value,
        instance_tls: serde_json::Value,
    ) -> serde_json::Value {
        serde_json::json!({
            "compartments_rules": { "can_reach": { "c": ["c"] } },
            "instances": {
                "a": {
                    "ip": "10.0.0.1", "host": "a.example", "port": port,
                    "compartment_id": "c", "affiliation": "",
                    "taxonomies_rules": { "required_taxonomies": [], "allowed_tags": {}, "blocked_tags": [] },
                    "blocked_distribution_levels": [], "blocked_sharing_groups_uuids": [],
                    "blocked_attribute_types": [], "blocked_attribute_categories": [],
                    "blocked_object_types": []
                }
            },
            "guard": { "tls": tls, "instances": { "a": { "tls": instance_tls } } }
        })
    }

    #[test]
    fn snapshot_without_certificates_has_no_acceptor() {
        let s = Snapshot::build(config(80, serde_json::json!({}), serde_json::json!({}))).unwrap();
        assert!(s.acceptor.is_none());
    }

    #[test]
    fn snapshot_with_a_ca_mints_and_bad_material_refuses_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let files = tls::ca_init(dir.path()).unwrap();
        let good = serde_json::json!({
            "ca_cert": files.cert, "ca_key": files.key, "upstream_ca_bundle": files.cert,
        });
        let s = Snapshot::build(config(443, good, serde_json::json!({}))).unwrap();
        assert!(s.acceptor.is_some());

        let missing = dir.path().join("missing.key");
        let bad = serde_json::json!({
            "ca_cert": files.cert, "ca_key": missing, "upstream_ca_bundle": files.cert,
        });
        let e = Snapshot::build(config(443, bad, serde_json::json!({})))
            .err()
            .expect("a missing key is refused");
        assert!(e.to_string().contains("missing.key"), "{e}");
    }
}
