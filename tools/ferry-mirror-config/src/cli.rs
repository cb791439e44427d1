//! The command line of ferry-mirror-config: its clap definition, shared by the
//! binary, `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use ferry_cli::mirror_config::Format;

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-mirror-config --private-registry 10.0.0.5:5000/ns \\
      --cacert /etc/ferry/ca.pem --source bmpackages_1.30.0.tar.xz
  ferry-mirror-config --private-registry 10.0.0.5:5000/ns --cacert ca.pem \\
      --upstream gcr.io --format containerd --air-gap --out /
  ferry-mirror-config --private-registry 10.0.0.5:5000 --cacert ca.pem \\
      --upstream gcr.io --upstream quay.io --out ./mirror-config

Writes, without pushing anything, what makes a runtime pull UPSTREAM/PATH:TAG
from the private registry, where ferry-push put it (HOST:PORT/NAMESPACE/PATH:TAG):
  bmctl       registryMirrors: stanza for the cluster config
  containerd  etc/containerd/certs.d/UPSTREAM/hosts.toml (a namespace is the
              endpoint /v2/NAMESPACE with override_path = true)
  cri-o       etc/containers/registries.conf.d/50-ferry-mirror.conf and
              etc/containers/certs.d/HOST:PORT/ca.crt (CRI-O and Podman)
  k3s         etc/rancher/k3s/registries.yaml (RKE2: etc/rancher/rke2/); a
              namespace is a rewrite, a path in the endpoint does not work
  talos       talos/registry-mirrors.yaml: RegistryMirrorConfig and
              RegistryTLSConfig (the CA inline)
  openshift   openshift/: ImageDigestMirrorSet, ImageTagMirrorSet and the CA
              ConfigMap for image.config.openshift.io/cluster
Without --out the files are printed, each under a '# FORMAT: PATH' line; with
--out DIR they are written below DIR at those paths (--out / applies them).
Upstream hosts come from --upstream, or from the image names of --source (a
package or store). --air-gap: the runtime never falls back to the upstream
host (containerd: the mirror is the server; CRI-O: the prefix is rewritten;
Talos: skipFallback; OpenShift: NeverContactSource; k3s: start it with its
disable-default-registry-endpoint option). Credentials never go into these files:
give them to the runtime (kubelet pull secrets, ctr --user; Podman: podman
login HOST:PORT, as --creds is sent to the upstream host only, never a mirror).
Docker's registry-mirrors works for Docker Hub only and rejects paths: no
Docker daemon configuration can mirror gcr.io.

Exit codes:
  0    written (or printed)
  2    error (bad registry address, unreadable CA or source, no upstream host)";

/// The tool's own help for the shared groups (it has none), and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "",
    json: "",
};

/// The formats `--format` selects (`all`: every one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formats(pub Vec<Format>);

/// `--format` values: every runtime's name, and `all`.
fn formats() -> impl TypedValueParser<Value = Formats> {
    let mut names: Vec<&'static str> = Format::ALL
        .iter()
        .map(|f| ferry_cli::mirror_config::format_name(*f))
        .collect();
    names.push("all");
    PossibleValuesParser::new(names).map(|name: String| {
        if name == "all" {
            Formats(Format::ALL.to_vec())
        } else {
            Formats(vec![
                Format::from_str(&name, false).expect("a listed format name")
            ])
        }
    })
}

/// Write the mirror configuration of every container runtime for a private registry.
#[derive(Debug, Parser)]
#[command(name = "ferry-mirror-config", version = ferry_cli::VERSION)]
pub struct Cli {
    /// The private registry images were pushed to: HOST:PORT[/NAMESPACE].
    #[arg(long, value_name = "HOST:PORT[/NAMESPACE]")]
    pub private_registry: String,
    /// The private registry's CA certificate (PEM).
    #[arg(long, value_name = "CA.pem")]
    pub cacert: Option<PathBuf>,
    /// An upstream host to mirror (e.g. gcr.io); repeat for several.
    #[arg(long, value_name = "HOST")]
    pub upstream: Vec<String>,
    /// A package or store whose image names give the upstream hosts.
    #[arg(long, value_name = "PACKAGE_OR_STORE")]
    pub source: Option<PathBuf>,
    /// Which runtime's configuration to write.
    #[arg(long, value_name = "FORMAT", default_value = "all", value_parser = formats())]
    pub format: Formats,
    /// Write the files below DIR at their real relative paths instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Never fall back to the upstream host, where the runtime can say so.
    #[arg(long)]
    pub air_gap: bool,
    /// Docker config with pull credentials, for bmctl's pullCredentialConfigPath.
    #[arg(long, value_name = "FILE")]
    pub pull_credential_config: Option<PathBuf>,
}
