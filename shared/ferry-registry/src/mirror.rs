//! The configuration users paste after a push: the bmctl cluster config
//! `registryMirrors:` stanza and the equivalent containerd `hosts.toml`.

use std::path::Path;

use crate::target::Target;

/// Mirror configuration text for `target`, mirroring `upstream_hosts` (e.g. `gcr.io`);
/// `cacert` and `credential_config` are printed as absolute paths.
pub fn mirror_config(
    target: &Target,
    upstream_hosts: &[String],
    cacert: Option<&Path>,
    credential_config: Option<&Path>,
) -> String {
    // Absolute: the stanza is pasted into files read from other directories.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let cacert = cacert.map(absolute);
    let credential_config = credential_config.map(absolute);
    let endpoint = target.mirror_endpoint();
    let mut s = String::from("# Cluster config (bmctl): mirror every upstream host through the private registry\nregistryMirrors:\n");
    s.push_str(&format!("  - endpoint: {endpoint}\n"));
    if let Some(ca) = &cacert {
        s.push_str(&format!("    caCertPath: {}\n", ca.display()));
    }
    if let Some(c) = &credential_config {
        s.push_str(&format!("    pullCredentialConfigPath: {}\n", c.display()));
    }
    if !upstream_hosts.is_empty() {
        s.push_str("    hosts:\n");
        for h in upstream_hosts {
            s.push_str(&format!("      - {h}\n"));
        }
    }
    for h in upstream_hosts {
        s.push_str(&format!("\n# containerd: /etc/containerd/certs.d/{h}/hosts.toml\nserver = \"https://{h}\"\n\n[host.\"{endpoint}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"));
        if let Some(ca) = &cacert {
            s.push_str(&format!("  ca = \"{}\"\n", ca.display()));
        }
        if target.namespace.is_some() {
            s.push_str("  override_path = true\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_endpoint_and_override_path() {
        let t = Target::parse("10.0.0.5:5000/ns").unwrap();
        let s = mirror_config(&t, &["gcr.io".into()], Some(Path::new("/etc/ca.pem")), None);
        assert!(s.contains("endpoint: https://10.0.0.5:5000/v2/ns"));
        assert!(s.contains("caCertPath: /etc/ca.pem"));
        assert!(s.contains("[host.\"https://10.0.0.5:5000/v2/ns\"]"));
        assert!(s.contains("override_path = true"));
        let plain = mirror_config(
            &Target::parse("reg:5000").unwrap(),
            &["gcr.io".into()],
            None,
            None,
        );
        assert!(!plain.contains("override_path") && plain.contains("endpoint: https://reg:5000\n"));
    }
}
