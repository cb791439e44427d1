//! Mirror configuration for every container runtime: the files that make a
//! cluster's runtime pull `UPSTREAM/path:tag` (e.g. `gcr.io/…`) from the
//! private registry ferry pushed to, each in the form that runtime wants.
//!
//! One renderer per [`Format`], all from one [`MirrorSpec`] (private registry
//! with its namespace, upstream hosts, CA, air gap or not). Each renderer
//! returns [`ConfigFile`]s at their real paths relative to `/` (or to the
//! directory `--out` names), so the tree can be copied onto a node as is.
//! Facts per runtime: `reference/air-gap-loop.md` (mirror configuration).
//! `ferry-push` prints [`push_summary`] (bmctl + containerd) after a push.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ferry_registry::target::Target;

/// A runtime's configuration format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Format {
    /// bmctl cluster config `registryMirrors:`.
    Bmctl,
    /// containerd `certs.d/UPSTREAM/hosts.toml`.
    Containerd,
    /// CRI-O / Podman `registries.conf` (v2) drop-in plus the `certs.d` CA file.
    #[value(name = "cri-o")]
    CriO,
    /// k3s / RKE2 `registries.yaml`.
    K3s,
    /// Talos `RegistryMirrorConfig` and `RegistryTLSConfig` documents.
    Talos,
    /// OpenShift `ImageDigestMirrorSet`, `ImageTagMirrorSet` and the CA ConfigMap.
    Openshift,
}

impl Format {
    /// Every format, in the order `--format all` writes them.
    pub const ALL: [Format; 6] = [
        Format::Bmctl,
        Format::Containerd,
        Format::CriO,
        Format::K3s,
        Format::Talos,
        Format::Openshift,
    ];
}

/// What cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MirrorConfigError {
    /// The CA file (needed inline or copied by this format) cannot be read.
    #[error("cannot read the CA certificate {path}: {source}")]
    ReadCa {
        /// The `--cacert` path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No upstream host to mirror.
    #[error("no upstream host to mirror: give --upstream HOST or --source PACKAGE")]
    NoUpstream,
}

/// One file of a runtime's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it goes, relative to `/` (`etc/containerd/certs.d/gcr.io/hosts.toml`)
    /// or, for documents applied with a command, to the output directory.
    pub path: PathBuf,
    /// Its content.
    pub contents: String,
}

/// Everything the renderers need.
#[derive(Debug, Clone)]
pub struct MirrorSpec {
    /// The private registry and its namespace.
    pub target: Target,
    /// Upstream hosts mirrored through it (`gcr.io`, …), sorted, no duplicates.
    pub upstream: Vec<String>,
    /// The private registry's CA (absolute: the files are read from other directories).
    pub cacert: Option<PathBuf>,
    /// Docker config with pull credentials (bmctl `pullCredentialConfigPath`).
    pub credential_config: Option<PathBuf>,
    /// A true air gap: never fall back to the upstream host, where the runtime can say so.
    pub air_gap: bool,
}

impl MirrorSpec {
    /// A spec with paths made absolute and upstream hosts sorted and deduplicated.
    pub fn new(
        target: Target,
        upstream: impl IntoIterator<Item = String>,
        cacert: Option<&Path>,
        credential_config: Option<&Path>,
        air_gap: bool,
    ) -> MirrorSpec {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut upstream: Vec<String> = upstream.into_iter().collect();
        upstream.sort();
        upstream.dedup();
        MirrorSpec {
            target,
            upstream,
            cacert: cacert.map(absolute),
            credential_config: credential_config.map(absolute),
            air_gap,
        }
    }

    /// The CA's PEM text, for formats that carry it inline or copy it.
    fn ca_pem(&self) -> Result<Option<String>, MirrorConfigError> {
        self.cacert
            .as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map_err(|source| MirrorConfigError::ReadCa {
                    path: p.clone(),
                    source,
                })
            })
            .transpose()
    }

    /// `M:P` or `M:P/ns`: the mirror as a repository prefix (registries.conf, OpenShift).
    fn repository_prefix(&self) -> String {
        match &self.target.namespace {
            Some(ns) => format!("{}/{ns}", self.target.host),
            None => self.target.host.clone(),
        }
    }

    fn plain_http(&self) -> bool {
        self.target.scheme == "http"
    }
}

/// The files of `format` for `spec`.
pub fn render(spec: &MirrorSpec, format: Format) -> Result<Vec<ConfigFile>, MirrorConfigError> {
    if spec.upstream.is_empty() {
        return Err(MirrorConfigError::NoUpstream);
    }
    Ok(match format {
        Format::Bmctl => vec![bmctl(spec)],
        Format::Containerd => containerd(spec),
        Format::CriO => cri_o(spec)?,
        Format::K3s => vec![k3s(spec)],
        Format::Talos => vec![talos(spec)?],
        Format::Openshift => openshift(spec)?,
    })
}

/// Files as one text for a terminal: each preceded by `# FORMAT: /PATH`.
pub fn to_text(format: Format, files: &[ConfigFile]) -> String {
    let name = format_name(format);
    let mut s = String::new();
    for f in files {
        if !s.is_empty() {
            s.push('\n');
        }
        let shown = if f.path.starts_with("etc") {
            Path::new("/").join(&f.path)
        } else {
            f.path.clone()
        };
        let _ = writeln!(s, "# {name}: {}", shown.display());
        s.push_str(&f.contents);
    }
    s
}

/// The name `--format` takes.
pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::Bmctl => "bmctl",
        Format::Containerd => "containerd",
        Format::CriO => "cri-o",
        Format::K3s => "k3s",
        Format::Talos => "talos",
        Format::Openshift => "openshift",
    }
}

/// What `ferry-push` prints after a push: the bmctl stanza and containerd's
/// `hosts.toml` per upstream host (nothing when no image names a host).
pub fn push_summary(spec: &MirrorSpec) -> String {
    if spec.upstream.is_empty() {
        return bmctl(spec).contents;
    }
    let mut s = bmctl(spec).contents;
    for f in containerd(spec) {
        let _ = write!(s, "\n# containerd: /{}\n{}", f.path.display(), f.contents);
    }
    s
}

/// A TOML / YAML double-quoted string (JSON escaping is valid in both for these values).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `text` as a YAML literal block at `indent` spaces.
fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.trim_end()
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

fn bmctl(spec: &MirrorSpec) -> ConfigFile {
    let mut s = String::from(
        "# Cluster config (bmctl): mirror every upstream host through the private registry\nregistryMirrors:\n",
    );
    let _ = writeln!(s, "  - endpoint: {}", spec.target.mirror_endpoint());
    if let Some(ca) = &spec.cacert {
        let _ = writeln!(s, "    caCertPath: {}", ca.display());
    }
    if let Some(c) = &spec.credential_config {
        let _ = writeln!(s, "    pullCredentialConfigPath: {}", c.display());
    }
    if !spec.upstream.is_empty() {
        s.push_str("    hosts:\n");
        for h in &spec.upstream {
            let _ = writeln!(s, "      - {h}");
        }
    }
    ConfigFile {
        path: PathBuf::from("bmctl/registry-mirrors.yaml"),
        contents: s,
    }
}

/// The upstream host's own API endpoint (`docker.io` is served by `registry-1.docker.io`).
fn upstream_server(host: &str) -> String {
    match host {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        _ => format!("https://{host}"),
    }
}

/// containerd appends `/v2` to a host path unless `override_path` is set, so a
/// namespace goes into the endpoint as `/v2/NS` with `override_path = true`.
/// Air gap: the mirror is the `server` itself, so nothing else is ever asked;
/// it is listed as a `[host]` too, since containerd 1.6 rejects a hosts.toml
/// without a `host` table ("invalid `host` tree") and falls back to upstream.
fn containerd(spec: &MirrorSpec) -> Vec<ConfigFile> {
    let endpoint = spec.target.mirror_endpoint();
    let host_fields = |s: &mut String, indent: &str| {
        let _ = writeln!(s, "{indent}capabilities = [\"pull\", \"resolve\"]");
        if let Some(ca) = &spec.cacert {
            let _ = writeln!(s, "{indent}ca = {}", q(&ca.to_string_lossy()));
        }
        if spec.target.namespace.is_some() {
            let _ = writeln!(s, "{indent}override_path = true");
        }
    };
    spec.upstream
        .iter()
        .map(|h| {
            let mut s = String::new();
            if spec.air_gap {
                let _ = writeln!(s, "server = {}", q(&endpoint));
                host_fields(&mut s, "");
                s.push('\n');
            } else {
                let _ = writeln!(s, "server = {}\n", q(&upstream_server(h)));
            }
            let _ = writeln!(s, "[host.{}]", q(&endpoint));
            host_fields(&mut s, "  ");
            ConfigFile {
                path: Path::new("etc/containerd/certs.d")
                    .join(h)
                    .join("hosts.toml"),
                contents: s,
            }
        })
        .collect()
}

/// registries.conf (v2) accepts a repository prefix as a mirror location, so a
/// namespace is simply part of it. Air gap: the upstream prefix is rewritten to
/// the mirror (`location`), with no upstream to fall back to.
fn cri_o(spec: &MirrorSpec) -> Result<Vec<ConfigFile>, MirrorConfigError> {
    let prefix = spec.repository_prefix();
    let mut s = String::from(
        "# CRI-O / Podman (containers-registries.conf v2): pull UPSTREAM/... from the private registry\n",
    );
    for h in &spec.upstream {
        let _ = writeln!(s, "\n[[registry]]\nprefix = {}", q(h));
        if spec.air_gap {
            let _ = writeln!(s, "location = {}", q(&prefix));
            if spec.plain_http() {
                s.push_str("insecure = true\n");
            }
        } else {
            let _ = writeln!(s, "location = {}", q(h));
            let _ = writeln!(s, "\n[[registry.mirror]]\nlocation = {}", q(&prefix));
            if spec.plain_http() {
                s.push_str("insecure = true\n");
            }
        }
    }
    let mut files = vec![ConfigFile {
        path: PathBuf::from("etc/containers/registries.conf.d/50-ferry-mirror.conf"),
        contents: s,
    }];
    if let Some(pem) = spec.ca_pem()? {
        files.push(ConfigFile {
            path: Path::new("etc/containers/certs.d")
                .join(&spec.target.host)
                .join("ca.crt"),
            contents: pem,
        });
    }
    Ok(files)
}

/// k3s / RKE2: a path in `endpoint` does not work (k3s #2161), so a namespace is a `rewrite`.
fn k3s(spec: &MirrorSpec) -> ConfigFile {
    let mut s = String::from(
        "# RKE2: the same file at /etc/rancher/rke2/registries.yaml; restart k3s (or rke2-server) to apply\n",
    );
    if spec.air_gap {
        s.push_str("# Air gap: also start k3s / RKE2 with --disable-default-registry-endpoint (the upstream host is otherwise tried last)\n");
    }
    s.push_str("mirrors:\n");
    for h in &spec.upstream {
        let _ = writeln!(
            s,
            "  {}:\n    endpoint:\n      - {}",
            q(h),
            q(&spec.target.base_url())
        );
        if let Some(ns) = &spec.target.namespace {
            let _ = writeln!(
                s,
                "    rewrite:\n      \"^(.*)$\": {}",
                q(&format!("{ns}/$1"))
            );
        }
    }
    if let Some(ca) = &spec.cacert {
        let _ = writeln!(
            s,
            "configs:\n  {}:\n    tls:\n      ca_file: {}",
            q(&spec.target.host),
            q(&ca.to_string_lossy())
        );
    }
    ConfigFile {
        path: PathBuf::from("etc/rancher/k3s/registries.yaml"),
        contents: s,
    }
}

/// Talos machine-config documents: the endpoint as containerd takes it, the CA inline.
fn talos(spec: &MirrorSpec) -> Result<ConfigFile, MirrorConfigError> {
    let mut s = String::from(
        "# Talos machine config patch: talosctl patch mc --patch @talos/registry-mirrors.yaml\n",
    );
    for (i, h) in spec.upstream.iter().enumerate() {
        if i > 0 {
            s.push_str("---\n");
        }
        let _ = writeln!(
            s,
            "apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: {}\nendpoints:\n  - url: {}",
            q(h),
            q(&spec.target.mirror_endpoint())
        );
        if spec.target.namespace.is_some() {
            s.push_str("    overridePath: true\n");
        }
        if spec.air_gap {
            s.push_str("skipFallback: true\n");
        }
    }
    if let Some(pem) = spec.ca_pem()? {
        let _ = write!(
            s,
            "---\napiVersion: v1alpha1\nkind: RegistryTLSConfig\nname: {}\nca: |-\n{}",
            q(&spec.target.host),
            yaml_block(&pem, 2)
        );
    }
    Ok(ConfigFile {
        path: PathBuf::from("talos/registry-mirrors.yaml"),
        contents: s,
    })
}

/// The name of the CA ConfigMap in `openshift-config`.
const OPENSHIFT_CA_CONFIGMAP: &str = "ferry-registry-ca";

/// OpenShift: digest and tag mirror sets (a namespace is part of the mirror
/// prefix); the CA in a ConfigMap keyed `HOST..PORT`.
fn openshift(spec: &MirrorSpec) -> Result<Vec<ConfigFile>, MirrorConfigError> {
    let policy = if spec.air_gap {
        "NeverContactSource"
    } else {
        "AllowContactingSource"
    };
    let set = |kind: &str, list: &str| {
        let mut s = format!(
            "# OpenShift: oc apply -f openshift/\napiVersion: config.openshift.io/v1\nkind: {kind}\nmetadata:\n  name: ferry-mirror\nspec:\n  {list}:\n"
        );
        for h in &spec.upstream {
            let _ = writeln!(
                s,
                "    - source: {}\n      mirrors:\n        - {}\n      mirrorSourcePolicy: {policy}",
                q(h),
                q(&spec.repository_prefix())
            );
        }
        s
    };
    let mut files = vec![
        ConfigFile {
            path: PathBuf::from("openshift/image-digest-mirror-set.yaml"),
            contents: set("ImageDigestMirrorSet", "imageDigestMirrors"),
        },
        ConfigFile {
            path: PathBuf::from("openshift/image-tag-mirror-set.yaml"),
            contents: set("ImageTagMirrorSet", "imageTagMirrors"),
        },
    ];
    if let Some(pem) = spec.ca_pem()? {
        let key = spec.target.host.replace(':', "..");
        files.push(ConfigFile {
            path: PathBuf::from("openshift/registry-ca.yaml"),
            contents: format!(
                "# then: oc patch image.config.openshift.io/cluster --type=merge \\\n#   -p '{{\"spec\":{{\"additionalTrustedCA\":{{\"name\":\"{OPENSHIFT_CA_CONFIGMAP}\"}}}}}}'\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {OPENSHIFT_CA_CONFIGMAP}\n  namespace: openshift-config\ndata:\n  {}: |\n{}",
                q(&key),
                yaml_block(&pem, 4)
            ),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    /// A spec for `10.0.0.5:5000[/ns]` mirroring gcr.io, with a CA file holding [`PEM`].
    fn spec(target: &str, air_gap: bool) -> (tempfile::TempDir, MirrorSpec) {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, PEM).unwrap();
        let spec = MirrorSpec::new(
            Target::parse(target).unwrap(),
            ["gcr.io".to_owned(), "gcr.io".to_owned()],
            Some(&ca),
            None,
            air_gap,
        );
        (dir, spec)
    }

    fn one(spec: &MirrorSpec, format: Format) -> ConfigFile {
        let mut files = render(spec, format).unwrap();
        assert_eq!(files.len(), 1, "{files:?}");
        files.remove(0)
    }

    fn ca(spec: &MirrorSpec) -> String {
        spec.cacert.as_ref().unwrap().display().to_string()
    }

    fn toml(f: &ConfigFile) -> toml::Table {
        f.contents
            .parse()
            .unwrap_or_else(|e| panic!("{e}\n{}", f.contents))
    }

    #[test]
    fn containerd_namespace_is_a_v2_path_with_override_path() {
        let (_d, s) = spec("10.0.0.5:5000/ns", false);
        let f = one(&s, Format::Containerd);
        assert_eq!(
            f.path,
            Path::new("etc/containerd/certs.d/gcr.io/hosts.toml")
        );
        let t = toml(&f);
        assert_eq!(t["server"].as_str(), Some("https://gcr.io"));
        let host = t["host"]["https://10.0.0.5:5000/v2/ns"].as_table().unwrap();
        assert_eq!(host.len(), 3, "{host:?}");
        assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
        assert_eq!(host["capabilities"][0].as_str(), Some("pull"));
        assert_eq!(host["capabilities"][1].as_str(), Some("resolve"));
        assert_eq!(host["ca"].as_str(), Some(ca(&s).as_str()));
        assert_eq!(host["override_path"].as_bool(), Some(true));
    }

    #[test]
    fn containerd_without_namespace_has_no_override_path_and_air_gap_makes_the_mirror_the_server() {
        let (_d, s) = spec("10.0.0.5:5000", false);
        let t = toml(&one(&s, Format::Containerd));
        let host = t["host"]["https://10.0.0.5:5000"].as_table().unwrap();
        assert!(!host.contains_key("override_path"), "{host:?}");

        let (_d, s) = spec("10.0.0.5:5000/ns", true);
        let t = toml(&one(&s, Format::Containerd));
        assert_eq!(t["server"].as_str(), Some("https://10.0.0.5:5000/v2/ns"));
        assert_eq!(t["override_path"].as_bool(), Some(true));
        assert_eq!(t["ca"].as_str(), Some(ca(&s).as_str()));
        assert_eq!(t["capabilities"][0].as_str(), Some("pull"));
        // containerd 1.6 needs a `host` table: the mirror again, nothing upstream.
        let hosts = t["host"].as_table().unwrap();
        assert_eq!(hosts.len(), 1, "{hosts:?}");
        let host = hosts["https://10.0.0.5:5000/v2/ns"].as_table().unwrap();
        for key in ["capabilities", "ca", "override_path"] {
            assert_eq!(host[key], t[key], "{key}");
        }
    }

    #[test]
    fn cri_o_mirror_location_keeps_the_namespace_and_the_ca_goes_to_certs_d() {
        let (_d, s) = spec("10.0.0.5:5000/ns", false);
        let files = render(&s, Format::CriO).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[0].path,
            Path::new("etc/containers/registries.conf.d/50-ferry-mirror.conf")
        );
        let t = toml(&files[0]);
        let regs = t["registry"].as_array().unwrap();
        assert_eq!(regs.len(), 1);
        assert_eq!(regs[0]["prefix"].as_str(), Some("gcr.io"));
        assert_eq!(regs[0]["location"].as_str(), Some("gcr.io"));
        let mirrors = regs[0]["mirror"].as_array().unwrap();
        assert_eq!(mirrors.len(), 1);
        assert_eq!(mirrors[0]["location"].as_str(), Some("10.0.0.5:5000/ns"));
        assert!(mirrors[0].get("insecure").is_none());
        assert_eq!(
            files[1].path,
            Path::new("etc/containers/certs.d/10.0.0.5:5000/ca.crt")
        );
        assert_eq!(files[1].contents, PEM);

        let (_d, s) = spec("10.0.0.5:5000/ns", true);
        let t = toml(&render(&s, Format::CriO).unwrap()[0]);
        let reg = &t["registry"][0];
        assert_eq!(reg["location"].as_str(), Some("10.0.0.5:5000/ns"));
        assert!(reg.get("mirror").is_none(), "air gap: no upstream left");

        let plain = MirrorSpec::new(
            Target::parse("http://10.0.0.5:5000").unwrap(),
            ["gcr.io".to_owned()],
            None,
            None,
            false,
        );
        let files = render(&plain, Format::CriO).unwrap();
        assert_eq!(files.len(), 1, "no CA, no certs.d file");
        assert_eq!(
            toml(&files[0])["registry"][0]["mirror"][0]["insecure"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn k3s_namespace_is_a_rewrite_never_a_path_in_the_endpoint() {
        let (_d, s) = spec("10.0.0.5:5000/ns", false);
        let f = one(&s, Format::K3s);
        assert_eq!(f.path, Path::new("etc/rancher/k3s/registries.yaml"));
        let body: Vec<&str> = f.contents.lines().filter(|l| !l.starts_with('#')).collect();
        let want = format!(
            "mirrors:\n  \"gcr.io\":\n    endpoint:\n      - \"https://10.0.0.5:5000\"\n    rewrite:\n      \"^(.*)$\": \"ns/$1\"\nconfigs:\n  \"10.0.0.5:5000\":\n    tls:\n      ca_file: \"{}\"",
            ca(&s)
        );
        assert_eq!(body.join("\n"), want);
        assert!(!f.contents.contains("disable-default-registry-endpoint"));
        let (_d, s) = spec("10.0.0.5:5000", true);
        let f = one(&s, Format::K3s);
        assert!(!f.contents.contains("rewrite"), "{}", f.contents);
        assert!(f.contents.contains("--disable-default-registry-endpoint"));
    }

    #[test]
    fn talos_mirror_and_tls_documents() {
        let (_d, s) = spec("10.0.0.5:5000/ns", true);
        let f = one(&s, Format::Talos);
        assert_eq!(f.path, Path::new("talos/registry-mirrors.yaml"));
        let body: Vec<&str> = f.contents.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body.join("\n"),
            "apiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: \"gcr.io\"\nendpoints:\n  - url: \"https://10.0.0.5:5000/v2/ns\"\n    overridePath: true\nskipFallback: true\n---\napiVersion: v1alpha1\nkind: RegistryTLSConfig\nname: \"10.0.0.5:5000\"\nca: |-\n  -----BEGIN CERTIFICATE-----\n  MIIB\n  -----END CERTIFICATE-----"
        );
        let (_d, s) = spec("10.0.0.5:5000", false);
        let f = one(&s, Format::Talos);
        assert!(f.contents.contains("  - url: \"https://10.0.0.5:5000\"\n"));
        assert!(!f.contents.contains("overridePath") && !f.contents.contains("skipFallback"));
    }

    #[test]
    fn openshift_mirror_sets_and_ca_configmap() {
        let (_d, s) = spec("10.0.0.5:5000/ns", true);
        let files = render(&s, Format::Openshift).unwrap();
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("openshift/image-digest-mirror-set.yaml"),
                Path::new("openshift/image-tag-mirror-set.yaml"),
                Path::new("openshift/registry-ca.yaml"),
            ]
        );
        let body = |f: &ConfigFile| -> String {
            let v: Vec<&str> = f.contents.lines().filter(|l| !l.starts_with('#')).collect();
            v.join("\n")
        };
        for (f, kind, list) in [
            (&files[0], "ImageDigestMirrorSet", "imageDigestMirrors"),
            (&files[1], "ImageTagMirrorSet", "imageTagMirrors"),
        ] {
            assert_eq!(
                body(f),
                format!("apiVersion: config.openshift.io/v1\nkind: {kind}\nmetadata:\n  name: ferry-mirror\nspec:\n  {list}:\n    - source: \"gcr.io\"\n      mirrors:\n        - \"10.0.0.5:5000/ns\"\n      mirrorSourcePolicy: NeverContactSource")
            );
        }
        assert_eq!(
            body(&files[2]),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ferry-registry-ca\n  namespace: openshift-config\ndata:\n  \"10.0.0.5..5000\": |\n    -----BEGIN CERTIFICATE-----\n    MIIB\n    -----END CERTIFICATE-----"
        );
        let (_d, s) = spec("10.0.0.5:5000/ns", false);
        assert!(render(&s, Format::Openshift).unwrap()[0]
            .contents
            .contains("mirrorSourcePolicy: AllowContactingSource"));
    }

    #[test]
    fn bmctl_stanza_and_push_summary_as_ferry_push_prints_them() {
        let (_d, s) = spec("10.0.0.5:5000/ns", false);
        let f = one(&s, Format::Bmctl);
        assert_eq!(
            f.contents,
            format!("# Cluster config (bmctl): mirror every upstream host through the private registry\nregistryMirrors:\n  - endpoint: https://10.0.0.5:5000/v2/ns\n    caCertPath: {}\n    hosts:\n      - gcr.io\n", ca(&s))
        );
        assert_eq!(
            push_summary(&s),
            format!("{}\n# containerd: /etc/containerd/certs.d/gcr.io/hosts.toml\nserver = \"https://gcr.io\"\n\n[host.\"https://10.0.0.5:5000/v2/ns\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n  override_path = true\n", f.contents, ca(&s))
        );
    }

    #[test]
    fn missing_ca_and_no_upstream_are_errors() {
        let mut s = spec("10.0.0.5:5000", false).1; // its CA dir is gone
        assert!(matches!(
            render(&s, Format::Talos),
            Err(MirrorConfigError::ReadCa { .. })
        ));
        s.upstream.clear();
        assert!(matches!(
            render(&s, Format::Bmctl),
            Err(MirrorConfigError::NoUpstream)
        ));
    }
}
