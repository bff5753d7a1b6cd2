//! The Kubernetes manifests in `deploy/kubernetes` agree with the code and with each other:
//! every ConfigMap's server TOML loads with the server's own parser and names files that its
//! StatefulSet mounts from Secrets; every Service selects exactly one StatefulSet on the port
//! that node listens on; the nodes' peers are the Services and certificate identities; the
//! kustomization lists every manifest; the example party job and `scripts/k8s-secrets.sh`
//! match the manifests; the overlay `deploy/kubernetes-workers` scales every compute server to
//! the same number of worker pods and gives each further worker its Service. Nothing here needs
//! a cluster (`kubectl kustomize` renders both where kubectl is installed: not checked here).

use ppea::net::config::{Role, ServerConfig};
use ppea::net::party::PartyJob;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn k8s_dir() -> PathBuf {
    Path::new(ROOT).join("deploy/kubernetes")
}

/// One YAML document and the file it came from.
struct Doc {
    file: String,
    v: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.v["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.v["metadata"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a {} without metadata.name", self.file, self.kind()))
    }
}

/// The YAML files of `deploy/kubernetes` (names, sorted).
fn yaml_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .collect();
    files.sort();
    files
}

/// Every document of every manifest (the YAML files but the kustomization).
fn docs() -> Vec<Doc> {
    let mut out = Vec::new();
    for file in yaml_files() {
        if file == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(k8s_dir().join(&file)).unwrap();
        for d in serde_yaml_ng::Deserializer::from_str(&text) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{file}: {e}"));
            if v.is_null() {
                continue;
            }
            out.push(Doc {
                file: file.clone(),
                v,
            });
        }
    }
    out
}

fn of_kind<'a>(docs: &'a [Doc], kind: &str) -> Vec<&'a Doc> {
    docs.iter().filter(|d| d.kind() == kind).collect()
}

fn str_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let s = |x: &Value| {
                        x.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| panic!("not a string: {x:?}"))
                    };
                    (s(k), s(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// A memory quantity (`8Gi`, `512Mi`, `8G`, bytes) in MiB.
fn quantity_mib(q: &str) -> u64 {
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| q.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((q, 1.0));
    let n: f64 = num
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {q:?}"));
    (n * mult / (1024.0 * 1024.0)) as u64
}

/// A server node as the manifests deploy it.
struct Node {
    /// The StatefulSet's name.
    statefulset: String,
    /// Its pod template's labels.
    pod_labels: BTreeMap<String, String>,
    /// The server TOML, loaded with `ServerConfig::load`.
    cfg: ServerConfig,
    /// File name (as mounted) -> (Secret, key) for every file of the certificate mount.
    secret_files: BTreeMap<PathBuf, (String, String)>,
    /// The container's memory limit in MiB.
    memory_limit_mib: u64,
    /// Container port name -> port.
    ports: BTreeMap<String, u64>,
}

/// The files a volume provides, by path inside its mount: (Secret name, key) for secret and
/// projected-secret volumes. Items must be listed, so that the file names are explicit.
fn secret_volume_files(vol: &Value, ctx: &str) -> BTreeMap<String, (String, String)> {
    let mut files = BTreeMap::new();
    let mut add = |secret: &str, items: &Value| {
        let items = items
            .as_sequence()
            .unwrap_or_else(|| panic!("{ctx}: Secret {secret} must list its items"));
        for it in items {
            let (k, p) = (it["key"].as_str().unwrap(), it["path"].as_str().unwrap());
            let old = files.insert(p.to_string(), (secret.to_string(), k.to_string()));
            assert!(old.is_none(), "{ctx}: two sources for {p}");
        }
    };
    if let Some(s) = vol["secret"]["secretName"].as_str() {
        add(s, &vol["secret"]["items"]);
    }
    if let Some(sources) = vol["projected"]["sources"].as_sequence() {
        for src in sources {
            let s = src["secret"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: a projected source that is not a Secret"));
            add(s, &src["secret"]["items"]);
        }
    }
    files
}

/// Every StatefulSet with its ConfigMap's server TOML (loaded from a temporary copy at the path
/// the container reads it from, relative to a scratch root) and its mounted Secret files.
fn nodes(docs: &[Doc]) -> Vec<Node> {
    let configmaps: BTreeMap<&str, &Doc> = of_kind(docs, "ConfigMap")
        .into_iter()
        .map(|d| (d.name(), d))
        .collect();
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch =
        std::env::temp_dir().join(format!("ppea-manifests-{}-{call}", std::process::id()));
    let mut out = Vec::new();
    for ss in of_kind(docs, "StatefulSet") {
        let ctx = format!("{}: StatefulSet {}", ss.file, ss.name());
        let pod = &ss.v["spec"]["template"]["spec"];
        let containers = pod["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "{ctx}: one container");
        let c = &containers[0];
        let volumes: BTreeMap<&str, &Value> = pod["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        let mounts: BTreeMap<PathBuf, &Value> = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                let vol = volumes[m["name"].as_str().unwrap()];
                // Only a scratch volume (emptyDir, for spilled upload shares) is writable.
                if !vol["emptyDir"].is_mapping() {
                    assert_eq!(
                        m["readOnly"].as_bool(),
                        Some(true),
                        "{ctx}: read-only mounts"
                    );
                }
                (PathBuf::from(m["mountPath"].as_str().unwrap()), vol)
            })
            .collect();
        let writable: Vec<&PathBuf> = mounts
            .iter()
            .filter(|(_, v)| v["emptyDir"].is_mapping())
            .map(|(p, _)| p)
            .collect();
        // The configuration file the command reads, and the ConfigMap behind it.
        let command = strings(&c["command"]);
        assert_eq!(command[..2], ["server", "run"], "{ctx}: runs `server run`");
        let at = command.iter().position(|a| a == "--config").unwrap();
        let config_path = PathBuf::from(&command[at + 1]);
        let vol = mounts[config_path.parent().unwrap()];
        let cm_name = vol["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: the --config directory is not a ConfigMap"));
        let cm = configmaps
            .get(cm_name)
            .unwrap_or_else(|| panic!("{ctx}: no ConfigMap {cm_name}"));
        let key = config_path.file_name().unwrap().to_str().unwrap();
        let toml = cm.v["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: ConfigMap {cm_name} has no {key}"));
        let local = scratch.join(config_path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, toml).unwrap();
        let cfg = ServerConfig::load(&local)
            .unwrap_or_else(|e| panic!("{}: ConfigMap {cm_name}: {e}", cm.file));
        // The probes read the same file and need the (loopback) admin endpoint.
        for probe in ["startupProbe", "livenessProbe"] {
            assert_eq!(
                strings(&c[probe]["exec"]["command"]),
                ["server", "status", "--config", &command[at + 1]],
                "{ctx}: {probe} runs `server status` on the node's configuration"
            );
        }
        assert!(
            cfg.admin_addr().unwrap().is_some(),
            "{ctx}: the probes need `admin` in {cm_name}"
        );
        // The root filesystem is read-only: spilled upload shares go to the one writable
        // scratch volume, and nothing else is writable.
        let spill: Vec<PathBuf> = match cfg.role {
            Role::Compute => vec![PathBuf::from(&cfg.limits.spill_dir)],
            Role::Dealer => Vec::new(),
        };
        assert_eq!(
            writable,
            spill.iter().collect::<Vec<_>>(),
            "{ctx}: a compute server's limits.spill_dir must be its one writable (emptyDir) mount"
        );
        // Every TLS file lies in a mount of Secret items.
        let mut secret_files = BTreeMap::new();
        for (what, p) in [
            ("ca", &cfg.tls.ca),
            ("cert", &cfg.tls.cert),
            ("key", &cfg.tls.key),
        ] {
            assert!(p.is_absolute(), "{ctx}: tls.{what} {p:?} must be absolute");
            let dir = p.parent().unwrap();
            let vol = mounts
                .get(dir)
                .unwrap_or_else(|| panic!("{ctx}: tls.{what} {p:?}: {dir:?} is not mounted"));
            let files = secret_volume_files(vol, &ctx);
            let file = p.file_name().unwrap().to_str().unwrap();
            let src = files.get(file).unwrap_or_else(|| {
                panic!("{ctx}: tls.{what} {p:?}: no Secret item provides {file}")
            });
            secret_files.insert(p.clone(), src.clone());
        }
        let ports = c["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                assert_eq!(p["protocol"].as_str(), Some("UDP"), "{ctx}: QUIC is UDP");
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        let limit = c["resources"]["limits"]["memory"]
            .as_str()
            .unwrap_or_else(|| panic!("{ctx}: no memory limit"));
        out.push(Node {
            statefulset: ss.name().to_string(),
            pod_labels: str_map(&ss.v["spec"]["template"]["metadata"]["labels"]),
            cfg,
            secret_files,
            memory_limit_mib: quantity_mib(limit),
            ports,
        });
    }
    std::fs::remove_dir_all(&scratch).ok();
    out
}

#[test]
fn kustomization_lists_every_manifest() {
    let files = yaml_files();
    assert!(files.contains(&"kustomization.yaml".to_string()));
    let k: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(k8s_dir().join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(k["kind"].as_str(), Some("Kustomization"));
    let listed: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    let present: BTreeSet<String> = files
        .into_iter()
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs files");
    // The namespace it sets is the one namespace.yaml creates.
    let docs = docs();
    let ns = of_kind(&docs, "Namespace");
    assert_eq!(ns.len(), 1);
    assert_eq!(k["namespace"].as_str(), Some(ns[0].name()));
    for d in &docs {
        assert!(d.v["apiVersion"].is_string(), "{}: apiVersion", d.file);
        assert!(!d.kind().is_empty(), "{}: kind", d.file);
        d.name();
        // Certificates and keys come from Secrets made at deployment time, never from here.
        assert_ne!(
            d.kind(),
            "Secret",
            "{}: no Secret in the repository",
            d.file
        );
    }
    for entry in std::fs::read_dir(Path::new(ROOT).join("deploy")).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(!text.contains("PRIVATE KEY"), "{p:?} holds a key");
        }
    }
}

#[test]
fn configmaps_parse_and_name_mounted_secret_files() {
    let docs = docs();
    let nodes = nodes(&docs);
    assert_eq!(nodes.len(), 3, "server-0, server-1 and the dealer");
    // Every ConfigMap is some StatefulSet's configuration.
    let used: BTreeSet<String> = of_kind(&docs, "StatefulSet")
        .iter()
        .flat_map(|ss| {
            ss.v["spec"]["template"]["spec"]["volumes"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(|v| v["configMap"]["name"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    for cm in of_kind(&docs, "ConfigMap") {
        assert!(
            used.contains(cm.name()),
            "ConfigMap {} is not mounted",
            cm.name()
        );
    }
    for n in &nodes {
        let name = &n.cfg.name;
        assert_eq!(
            &n.statefulset, name,
            "the StatefulSet is named after its identity"
        );
        assert_eq!(n.pod_labels.get("ppea/server"), Some(name));
        // The CA is the shared Secret; the certificate and key are this identity's Secret.
        let files: BTreeMap<&str, (&str, &str)> = n
            .secret_files
            .iter()
            .map(|(p, (s, k))| (p.to_str().unwrap(), (s.as_str(), k.as_str())))
            .collect();
        assert_eq!(
            files[n.cfg.tls.ca.to_str().unwrap()],
            ("ppea-ca", "ca.pem"),
            "{name}: ca"
        );
        let own = format!("ppea-{name}");
        assert_eq!(
            files[n.cfg.tls.cert.to_str().unwrap()],
            (own.as_str(), "tls.crt"),
            "{name}: cert"
        );
        assert_eq!(
            files[n.cfg.tls.key.to_str().unwrap()],
            (own.as_str(), "tls.key"),
            "{name}: key"
        );
        assert_eq!(
            n.cfg.tls.cert.file_name().unwrap().to_str().unwrap(),
            format!("{name}.pem")
        );
        // The memory budget is set, below the container's limit, with room for the process.
        let budget = n.cfg.limits.memory_mib;
        assert!(budget > 0, "{name}: set memory_mib explicitly");
        assert!(
            budget * 5 <= n.memory_limit_mib * 4,
            "{name}: memory_mib {budget} must stay at or below 80% of the container limit \
             ({} MiB)",
            n.memory_limit_mib
        );
    }
}

#[test]
fn services_select_one_statefulset_on_its_listen_port() {
    let docs = docs();
    let nodes = nodes(&docs);
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), nodes.len(), "a Service per node");
    let mut selected = BTreeSet::new();
    for s in &services {
        let mut sel = str_map(&s.v["spec"]["selector"]);
        assert!(!sel.is_empty(), "Service {} has no selector", s.name());
        // A compute server's Service picks its worker 0 (pod index 0), whatever the replicas.
        let pod = sel.remove(POD_NAME);
        let hits: Vec<&Node> = nodes
            .iter()
            .filter(|n| sel.iter().all(|(k, v)| n.pod_labels.get(k) == Some(v)))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "Service {} selects {} StatefulSets",
            s.name(),
            hits.len()
        );
        let n = hits[0];
        assert_eq!(s.name(), n.cfg.name, "Service named after the identity");
        if n.cfg.role == Role::Compute {
            assert_eq!(
                pod,
                Some(format!("{}-0", n.statefulset)),
                "Service {}: worker 0's pod",
                s.name()
            );
        }
        selected.insert(n.statefulset.clone());
        let listen = n.cfg.listen_addr().unwrap().port() as u64;
        let ports = s.v["spec"]["ports"].as_sequence().unwrap();
        assert_eq!(ports.len(), 1, "Service {}: one port", s.name());
        let p = &ports[0];
        assert_eq!(p["protocol"].as_str(), Some("UDP"), "Service {}", s.name());
        assert_eq!(
            p["port"].as_u64(),
            Some(listen),
            "Service {}: port vs listen",
            s.name()
        );
        let target = match &p["targetPort"] {
            Value::Number(t) => t.as_u64().unwrap(),
            Value::String(name) => n.ports[name],
            _ => listen,
        };
        assert_eq!(target, listen, "Service {}: targetPort", s.name());
    }
    assert_eq!(
        selected.len(),
        nodes.len(),
        "every StatefulSet has a Service"
    );
    // Each StatefulSet's own selector matches its pods and names its Service.
    for ss in of_kind(&docs, "StatefulSet") {
        let sel = str_map(&ss.v["spec"]["selector"]["matchLabels"]);
        let labels = str_map(&ss.v["spec"]["template"]["metadata"]["labels"]);
        assert!(!sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
        let svc = ss.v["spec"]["serviceName"].as_str().unwrap();
        assert!(services.iter().any(|s| s.name() == svc), "{svc}");
    }
}

#[test]
fn peers_are_the_services_and_identities() {
    let docs = docs();
    let nodes = nodes(&docs);
    let services: BTreeSet<&str> = of_kind(&docs, "Service").iter().map(|s| s.name()).collect();
    let compute: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| n.cfg.role == Role::Compute)
        .map(|n| n.cfg.name.as_str())
        .collect();
    let dealers: Vec<&str> = nodes
        .iter()
        .filter(|n| n.cfg.role == Role::Dealer)
        .map(|n| n.cfg.name.as_str())
        .collect();
    assert_eq!(dealers.len(), 1, "one dealer");
    assert!((2..=4).contains(&compute.len()), "2 to 4 compute servers");
    for n in &nodes {
        let name = &n.cfg.name;
        let servers: BTreeSet<&str> = n.cfg.peers.servers.iter().map(String::as_str).collect();
        assert_eq!(servers, compute, "{name}: peers.servers");
        assert_eq!(
            n.cfg.peers.dealer.as_deref(),
            Some(dealers[0]),
            "{name}: peers.dealer"
        );
        for peer in servers.iter().chain([&dealers[0]]) {
            assert!(
                services.contains(peer),
                "{name}: no Service for peer {peer}"
            );
        }
        if n.cfg.role == Role::Compute {
            assert_eq!(n.cfg.peers.parties, ["party-a", "party-b"], "{name}");
        }
    }
}

/// The label the StatefulSet controller gives each pod: its name, `STATEFULSET-INDEX`.
const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";

/// Every compute pod passes its index in the StatefulSet as its worker index; the `workers`
/// overlay scales every compute StatefulSet to the same number of pods and gives worker `j`
/// of each a Service `NAME-wJ` on the server's port, selecting pod `NAME-J`.
#[test]
fn workers_overlay_scales_servers_and_exposes_every_worker() {
    let docs = docs();
    let nodes = nodes(&docs);
    for ss in of_kind(&docs, "StatefulSet") {
        let c = &ss.v["spec"]["template"]["spec"]["containers"][0];
        let command = strings(&c["command"]);
        let compute = nodes
            .iter()
            .any(|n| n.statefulset == ss.name() && n.cfg.role == Role::Compute);
        if !compute {
            continue;
        }
        let at = command.iter().position(|a| a == "--worker").unwrap();
        assert_eq!(command[at + 1], "$(PPEA_WORKER)", "{}", ss.name());
        let env = c["env"].as_sequence().unwrap();
        let var = env
            .iter()
            .find(|e| e["name"].as_str() == Some("PPEA_WORKER"))
            .unwrap();
        assert_eq!(
            var["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some("metadata.labels['apps.kubernetes.io/pod-index']"),
            "{}: the pod's index",
            ss.name()
        );
    }
    let dir = Path::new(ROOT).join("deploy/kubernetes-workers");
    let k: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    // The base lies beside the overlay, not above it (kustomize refuses a base that contains
    // its overlay).
    assert_eq!(strings(&k["resources"]), ["../kubernetes", "services.yaml"]);
    let mut replicas = BTreeMap::new();
    for p in k["patches"].as_sequence().unwrap() {
        assert_eq!(p["target"]["kind"].as_str(), Some("StatefulSet"));
        let ops: Value = serde_yaml_ng::from_str(p["patch"].as_str().unwrap()).unwrap();
        let op = &ops.as_sequence().unwrap()[0];
        assert_eq!(op["path"].as_str(), Some("/spec/replicas"));
        replicas.insert(
            p["target"]["name"].as_str().unwrap().to_string(),
            op["value"].as_u64().unwrap() as usize,
        );
    }
    let compute: Vec<&Node> = nodes
        .iter()
        .filter(|n| n.cfg.role == Role::Compute)
        .collect();
    let w = replicas[&compute[0].statefulset];
    assert!(w >= 2, "the overlay runs several workers");
    let mut services: BTreeMap<String, Value> = BTreeMap::new();
    for d in serde_yaml_ng::Deserializer::from_str(
        &std::fs::read_to_string(dir.join("services.yaml")).unwrap(),
    ) {
        let v = Value::deserialize(d).unwrap();
        assert_eq!(v["kind"].as_str(), Some("Service"));
        services.insert(v["metadata"]["name"].as_str().unwrap().to_string(), v);
    }
    let mut expected = BTreeSet::new();
    for n in &compute {
        assert_eq!(
            replicas.get(&n.statefulset),
            Some(&w),
            "{}: every server the same",
            n.cfg.name
        );
        for j in 1..w {
            let name = format!("{}-w{j}", n.cfg.name);
            let s = services
                .get(&name)
                .unwrap_or_else(|| panic!("no Service {name}"));
            let sel = str_map(&s["spec"]["selector"]);
            assert_eq!(
                sel.get(POD_NAME),
                Some(&format!("{}-{j}", n.statefulset)),
                "{name}"
            );
            assert_eq!(
                sel.get("ppea/server"),
                n.pod_labels.get("ppea/server"),
                "{name}"
            );
            let p = &s["spec"]["ports"][0];
            assert_eq!(p["protocol"].as_str(), Some("UDP"), "{name}");
            assert_eq!(
                p["port"].as_u64(),
                Some(n.cfg.listen_addr().unwrap().port() as u64),
                "{name}: the server's port"
            );
            assert_eq!(
                n.ports[p["targetPort"].as_str().unwrap()],
                p["port"].as_u64().unwrap()
            );
            expected.insert(name);
        }
    }
    assert_eq!(services.keys().cloned().collect::<BTreeSet<_>>(), expected);
}

/// `deploy/party-job.example.toml` names the Services and their ports.
#[test]
fn party_job_example_points_at_the_services() {
    let docs = docs();
    let nodes = nodes(&docs);
    let ns = of_kind(&docs, "Namespace")[0].name().to_string();
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/party-job.example.toml")).unwrap();
    let job: PartyJob = toml::from_str(&text).unwrap();
    let port_of = |name: &str| {
        let n = nodes.iter().find(|n| n.cfg.name == name).unwrap();
        n.cfg.listen_addr().unwrap().port()
    };
    let compute: BTreeSet<String> = nodes
        .iter()
        .filter(|n| n.cfg.role == Role::Compute)
        .map(|n| n.cfg.name.clone())
        .collect();
    let named: BTreeSet<String> = job.servers.iter().map(|s| s.name.clone()).collect();
    assert_eq!(named, compute);
    for s in &job.servers {
        let (_, port) = s.addr.rsplit_once(':').unwrap();
        assert_eq!(port.parse::<u16>().unwrap(), port_of(&s.name), "{}", s.name);
    }
    let dealer = nodes.iter().find(|n| n.cfg.role == Role::Dealer).unwrap();
    let named = job
        .dealer
        .as_ref()
        .expect("the example job names the dealer");
    assert_eq!(named.name, dealer.cfg.name);
    assert_eq!(
        named.addr,
        format!("{}.{ns}.svc:{}", dealer.cfg.name, port_of(&dealer.cfg.name)),
        "the dealer's in-cluster Service name"
    );
    // Otherwise a valid job: only the placeholder blocking key is missing.
    let real = PartyJob {
        blocking_key: "ab".repeat(32),
        ..job
    };
    assert!(real.spec().validate().is_ok());
    // With the workers overlay: the commented lines name each server's worker 1 Service on the
    // server's port.
    let text = text.replace("# workers = ", "workers = ");
    let job: PartyJob = toml::from_str(&text).unwrap();
    for s in &job.servers {
        assert_eq!(s.workers.len(), 1, "{}", s.name);
        let (host, port) = s.workers[0].rsplit_once(':').unwrap();
        assert!(host.starts_with(&format!("{}-w1.", s.name)), "{host}");
        assert_eq!(port.parse::<u16>().unwrap(), port_of(&s.name), "{}", s.name);
    }
    let real = PartyJob {
        blocking_key: "ab".repeat(32),
        ..job
    };
    assert!(real.spec().validate().is_ok());
}

/// `scripts/k8s-secrets.sh` makes every Secret the StatefulSets mount, with the keys they
/// read, from `party certs` output, and nothing for the parties.
#[test]
fn secrets_script_makes_the_mounted_secrets() {
    let docs = docs();
    let dir = std::env::temp_dir().join(format!("ppea-k8s-secrets-{}", std::process::id()));
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.pem"), "").unwrap();
    for n in ["dealer", "server-0", "server-1", "party-a", "party-b"] {
        std::fs::write(certs.join(format!("{n}.pem")), "").unwrap();
        std::fs::write(certs.join(format!("{n}.key")), "").unwrap();
    }
    let script = Path::new(ROOT).join("scripts/k8s-secrets.sh");
    let run = |args: &[&str], path: Option<&Path>| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(&script).args(args);
        if let Some(p) = path {
            let old = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{old}", p.display()));
        }
        cmd.output().unwrap()
    };
    let out = run(&[certs.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(
        !printed.contains("party-"),
        "party keys stay out:\n{printed}"
    );
    // Secret name -> keys it gets.
    let mut made: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in printed.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words.windows(2).position(|w| w == ["create", "secret"]) else {
            continue;
        };
        let (kind, name) = (words[i + 2], words[i + 3]);
        assert!(line.contains("-n ppea"), "{line}");
        let keys = match kind {
            "tls" => ["tls.crt", "tls.key"].map(String::from).into(),
            "generic" => words
                .iter()
                .filter_map(|w| w.strip_prefix("--from-file="))
                .map(|f| f.split_once('=').unwrap().0.to_string())
                .collect(),
            k => panic!("unexpected secret type {k}"),
        };
        made.insert(name.to_string(), keys);
    }
    let mut needed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for n in nodes(&docs) {
        for (secret, key) in n.secret_files.values() {
            needed
                .entry(secret.clone())
                .or_default()
                .insert(key.clone());
        }
    }
    assert_eq!(made, needed, "Secrets made by the script vs mounted");
    // --apply runs the same commands through kubectl (a stand-in records its arguments).
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("kubectl.log");
    std::fs::write(
        bin.join("kubectl"),
        format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("kubectl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&[certs.to_str().unwrap(), "--apply"], Some(&bin));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let creates = calls
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == "create"))
        .count();
    assert_eq!(creates, 1 + needed.len(), "namespace and Secrets:\n{calls}");
    // A missing key is an error, before anything is printed or applied.
    std::fs::remove_file(certs.join("server-1.key")).unwrap();
    let out = run(&[certs.to_str().unwrap()], None);
    assert!(!out.status.success() && out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}
