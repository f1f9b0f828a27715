//! The Kubernetes manifests (deploy/k8s, issue 9 item 4), checked without a cluster:
//! - every manifest passes `kubernetes-validate --strict` against the pinned Kubernetes version
//!   (the schemas ship with the pinned package in .deps/venv, so this runs offline);
//! - the ConfigMap `permakey-config` carries deploy/config/cluster.toml byte for byte, and
//!   deploy/k8s/make-configmap.sh regenerates configmap.yaml exactly;
//! - deploy/config/cluster.toml and toy.toml load as configs, also with every `PERMAKEY__*`
//!   variable and `--set` the manifests give a container, and the config's [cluster] endpoints
//!   and listen ports are the Services, ports and probes of the manifests;
//! - every container runs one of the image's five binaries with the mounted config (init
//!   containers only wait for the keypoint model; Prometheus has its own image);
//! - pod templates carry the Prometheus annotations, servers have gRPC probes, actors none;
//! - `deploy/k8s/Kustomization` lists every manifest.
//!
//! The YAML is parsed by PyYAML from the same venv (kubernetes-validate depends on it) and
//! inspected here as JSON.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use pkrl_config::Config;
use serde_json::Value;

/// The Kubernetes version the manifests are validated against (schemas bundled with
/// kubernetes-validate, pinned in scripts/requirements.txt).
const KUBERNETES_VERSION: &str = "1.31.0";
/// The binaries of the permakey-rl image.
const BINARIES: [&str; 5] = ["permakey-rl", "replay-server", "keypoint-server", "learner", "actor"];
const IMAGE: &str = "permakey-rl:latest";
const CONFIG_PATH: &str = "/etc/permakey/config.toml";
const NAMESPACE: &str = "permakey-rl";
const METRICS_PORT: u64 = 9100;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn k8s_dir() -> PathBuf {
    workspace().join("deploy/k8s")
}

/// A program of the project's Python venv; a clear failure when the venv lacks it.
fn venv_tool(name: &str) -> PathBuf {
    let path = workspace().join(".deps/venv/bin").join(name);
    assert!(
        path.exists(),
        "{} not found: run scripts/setup.sh (it installs scripts/requirements.txt, which pins kubernetes-validate, into .deps/venv)",
        path.display()
    );
    path
}

/// Every manifest: the *.yaml / *.yml files of deploy/k8s (kustomize's own file excluded).
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.starts_with("kustomization.")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "too few manifests in {}: {files:?}", k8s_dir().display());
    files
}

/// YAML files -> one JSON array of `{"file": ..., "doc": ...}`, one entry per document.
fn yaml_documents(files: &[PathBuf]) -> Vec<(String, Value)> {
    const SCRIPT: &str = r#"
import json, sys, yaml
out = []
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if doc is not None:
                out.append({"file": path, "doc": doc})
json.dump(out, sys.stdout, default=str)
"#;
    let _ = venv_tool("kubernetes-validate");
    let output = Command::new(venv_tool("python")).arg("-c").arg(SCRIPT).args(files).output().unwrap();
    assert!(output.status.success(), "PyYAML could not parse the manifests:\n{}", String::from_utf8_lossy(&output.stderr));
    let all: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    all.into_iter()
        .map(|entry| {
            let file = Path::new(entry["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (file, entry["doc"].clone())
        })
        .collect()
}

/// Every object of every manifest, parsed once.
fn objects() -> &'static [(String, Value)] {
    static OBJECTS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
    OBJECTS.get_or_init(|| yaml_documents(&manifest_files()))
}

fn find(kind: &str, name: &str) -> &'static Value {
    objects()
        .iter()
        .map(|(_, doc)| doc)
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} `{name}` in deploy/k8s"))
}

/// Workloads with a pod template: (kind, name, template).
fn workloads() -> Vec<(String, String, &'static Value)> {
    objects()
        .iter()
        .filter_map(|(_, doc)| {
            let kind = doc["kind"].as_str()?;
            let template = match kind {
                "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &doc["spec"]["template"],
                "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
                _ => return None,
            };
            Some((kind.to_owned(), doc["metadata"]["name"].as_str()?.to_owned(), template))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|items| items.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()).unwrap_or_default()
}

/// A container's whole command line (`command` + `args`).
fn argv(container: &Value) -> Vec<String> {
    let mut argv = strings(&container["command"]);
    argv.extend(strings(&container["args"]));
    argv
}

/// The project's binaries a command line runs: the program itself, or for `sh -c SCRIPT` the
/// first word of each line of the script; with the line's words for further checks.
fn invocations(argv: &[String]) -> Vec<Vec<String>> {
    let lines: Vec<Vec<String>> = match argv {
        [sh, c, script, ..] if sh == "sh" && c == "-c" => {
            script.lines().map(|line| line.split_whitespace().map(str::to_owned).collect()).collect()
        }
        _ => vec![argv.to_vec()],
    };
    lines.into_iter().filter(|words| words.first().is_some_and(|w| BINARIES.contains(&w.as_str()))).collect()
}

fn port_named(container: &Value, name: &str) -> Option<u64> {
    container["ports"].as_array()?.iter().find(|p| p["name"] == name).and_then(|p| p["containerPort"].as_u64())
}

fn load(path: &Path, env: Vec<(String, String)>, overrides: &[String]) -> Config {
    Config::load(Some(path), env, overrides).unwrap_or_else(|e| panic!("{} does not load (env/--set {overrides:?}): {e}", path.display()))
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let files = manifest_files();
    let tool = venv_tool("kubernetes-validate");
    let output = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .current_dir(workspace())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "{} --strict --kubernetes-version {KUBERNETES_VERSION} failed ({}):\n{text}",
        tool.display(),
        output.status
    );
    // Every document was checked (an empty or skipped file would pass silently).
    let passed = text.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, objects().len(), "kubernetes-validate passed {passed} objects of {}:\n{text}", objects().len());
}

#[test]
fn configmap_carries_cluster_toml_verbatim() {
    let cluster_toml = std::fs::read_to_string(workspace().join("deploy/config/cluster.toml")).unwrap();
    let configmap = find("ConfigMap", "permakey-config");
    assert_eq!(configmap["metadata"]["namespace"], NAMESPACE);
    assert_eq!(configmap["data"].as_object().unwrap().len(), 1, "permakey-config holds config.toml only");
    assert!(
        configmap["data"]["config.toml"].as_str() == Some(cluster_toml.as_str()),
        "deploy/k8s/configmap.yaml's config.toml differs from deploy/config/cluster.toml: run deploy/k8s/make-configmap.sh"
    );

    // The script reproduces the committed file byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("configmap.yaml");
    let status = Command::new("sh").arg(k8s_dir().join("make-configmap.sh")).arg(&out).status().unwrap();
    assert!(status.success(), "make-configmap.sh failed: {status}");
    let committed = std::fs::read(k8s_dir().join("configmap.yaml")).unwrap();
    assert!(
        std::fs::read(&out).unwrap() == committed,
        "deploy/k8s/configmap.yaml is not what make-configmap.sh writes: run deploy/k8s/make-configmap.sh"
    );
}

#[test]
fn container_configs_load_and_match_the_services() {
    let dir = workspace().join("deploy/config");
    let toy = load(&dir.join("toy.toml"), Vec::new(), &[]);
    let config = load(&dir.join("cluster.toml"), Vec::new(), &[]);

    // Every container's own settings (PERMAKEY__* variables, --set flags) apply to the config.
    for (kind, name, template) in workloads() {
        for container in template["spec"]["containers"].as_array().unwrap() {
            let env: Vec<(String, String)> = container["env"]
                .as_array()
                .map(|vars| {
                    vars.iter()
                        .filter(|v| v["name"].as_str().is_some_and(|n| n.starts_with("PERMAKEY__")))
                        .map(|v| (v["name"].as_str().unwrap().to_owned(), v["value"].as_str().expect("a literal value").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let args = argv(container);
            let overrides: Vec<String> = args.windows(2).filter(|w| w[0] == "--set").map(|w| w[1].clone()).collect();
            let loaded = load(&dir.join("cluster.toml"), env.clone(), &overrides);
            if env.iter().any(|(n, v)| n == "PERMAKEY__DEVICE" && v == "cuda") {
                assert_eq!(loaded.device.to_string(), "cuda", "{kind} {name}");
            }
        }
    }

    // [cluster] endpoints = the Services; the listen ports = the containers' grpc ports and probes.
    for (cfg, what) in [(&config, "cluster.toml"), (&toy, "toy.toml")] {
        let servers = [
            (&cfg.cluster.replay, cfg.replay_server.listen.port(), "replay-server"),
            (&cfg.cluster.keypoints, cfg.keypoint_server.listen.port(), "keypoint-server"),
            (&cfg.cluster.learner, cfg.learner_server.listen.port(), "learner"),
        ];
        assert_eq!(cfg.metrics.listen.map(|a| u64::from(a.port())), Some(METRICS_PORT), "{what}: metrics.listen");
        for (endpoint, listen_port, binary) in servers {
            let host_port = endpoint.strip_prefix("http://").unwrap_or_else(|| panic!("{what}: {endpoint} is not http://"));
            let (host, port) = host_port.split_once(':').unwrap_or_else(|| panic!("{what}: {endpoint} has no port"));
            let port: u64 = port.trim_end_matches('/').parse().unwrap();
            assert_eq!(port, u64::from(listen_port), "{what}: {endpoint} and the server's listen port differ");
            let service = find("Service", host);
            let service_port = service["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["port"].as_u64() == Some(port))
                .unwrap_or_else(|| panic!("Service {host} has no port {port} ({endpoint})"));
            // The Service selects exactly one workload, whose container runs the server.
            let selector = service["spec"]["selector"].as_object().unwrap();
            let selected: Vec<_> = workloads()
                .into_iter()
                .filter(|(_, _, t)| selector.iter().all(|(k, v)| &t["metadata"]["labels"][k] == v))
                .collect();
            assert_eq!(selected.len(), 1, "Service {host} selects {} workloads", selected.len());
            let (kind, name, template) = &selected[0];
            let container = template["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| argv(c).first().map(String::as_str) == Some(binary))
                .unwrap_or_else(|| panic!("{kind} {name} (selected by Service {host}) does not run {binary}"));
            assert_eq!(port_named(container, "grpc"), Some(port), "{kind} {name}: containerPort `grpc`");
            assert_eq!(service_port["targetPort"], "grpc", "Service {host}: targetPort");
            for probe in ["readinessProbe", "livenessProbe"] {
                assert_eq!(container[probe]["grpc"]["port"].as_u64(), Some(port), "{kind} {name}: {probe} must be a gRPC probe on {port}");
            }
        }
    }
}

#[test]
fn containers_run_the_project_binaries_with_the_mounted_config() {
    let mut seen = BTreeSet::new();
    for (kind, name, template) in workloads() {
        let spec = &template["spec"];
        let config_volume = spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["configMap"]["name"] == "permakey-config")
            .and_then(|v| v["name"].as_str());
        for (list, init) in [("containers", false), ("initContainers", true)] {
            for container in spec[list].as_array().into_iter().flatten() {
                let what = format!("{kind} {name}, container {}", container["name"]);
                let args = argv(container);
                let image = container["image"].as_str().unwrap();
                if image != IMAGE {
                    assert!(!init, "{what}: init containers use {IMAGE}");
                    assert_eq!((image, args.first().map(String::as_str)), ("prometheus:latest", Some("prometheus")), "{what}: unexpected image");
                    continue;
                }
                assert_eq!(container["imagePullPolicy"], "IfNotPresent", "{what}: the image is built locally");
                let runs = invocations(&args);
                if init {
                    // Only waits (for the keypoint model): a shell loop, no binary.
                    assert!(args.len() == 3 && args[0] == "sh" && args[1] == "-c" && runs.is_empty(), "{what}: {args:?}");
                    continue;
                }
                assert!(!runs.is_empty(), "{what}: {args:?} runs none of {BINARIES:?}");
                if args[0] != "sh" {
                    assert_eq!(runs.len(), 1, "{what}");
                }
                for words in &runs {
                    seen.insert(words[0].clone());
                    assert!(
                        words.windows(2).any(|w| w[0] == "--config" && w[1] == CONFIG_PATH),
                        "{what}: {words:?} must read --config {CONFIG_PATH}"
                    );
                }
                let mount = container["volumeMounts"].as_array().into_iter().flatten().find(|m| m["mountPath"] == "/etc/permakey");
                assert!(
                    mount.is_some_and(|m| m["name"].as_str() == config_volume && m["readOnly"] == true),
                    "{what}: mounts the ConfigMap permakey-config read-only at /etc/permakey"
                );
            }
        }
    }
    let all: BTreeSet<String> = BINARIES.iter().map(|b| (*b).to_owned()).collect();
    assert_eq!(seen, all, "every binary of the image runs somewhere");

    // The commands the rest of the system expects.
    let main = |kind: &str, name: &str| argv(&find(kind, name)["spec"]["template"]["spec"]["containers"][0]).join(" ");
    assert_eq!(main("StatefulSet", "replay"), format!("replay-server --config {CONFIG_PATH}"));
    assert_eq!(main("Deployment", "keypoint-service"), format!("keypoint-server --config {CONFIG_PATH}"));
    assert_eq!(main("StatefulSet", "learner"), format!("learner --config {CONFIG_PATH} --resume-or-start --idle-when-done"));
    assert_eq!(main("Deployment", "actor"), format!("actor --config {CONFIG_PATH} --id auto --idle-when-done"));
    let pretrain = main("Job", "pretrain-keypoints");
    for needle in [
        "set -e",
        "[ -e /data/keypoints/run/checkpoints/latest ]",
        &format!("permakey-rl --config {CONFIG_PATH} keypoints collect --frames 4096 --out /data/keypoints/data"),
        &format!("permakey-rl --config {CONFIG_PATH} keypoints train --data /data/keypoints/data --out /data/keypoints/run"),
    ] {
        assert!(pretrain.contains(needle), "the pretrain Job's script lacks `{needle}`:\n{pretrain}");
    }
}

#[test]
fn workloads_are_labelled_scraped_probed_and_placed() {
    for (file, doc) in objects() {
        let what = format!("{file}: {} {}", doc["kind"], doc["metadata"]["name"]);
        if doc["kind"] != "Namespace" {
            assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{what}");
        }
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/part-of"], "permakey-rl", "{what}");
        assert!(labels["app.kubernetes.io/name"].is_string(), "{what}: app.kubernetes.io/name");
        if doc["kind"] != "Namespace" {
            assert!(labels["app.kubernetes.io/component"].is_string(), "{what}: app.kubernetes.io/component");
        }
    }
    for (kind, name, template) in workloads() {
        let what = format!("{kind} {name}");
        let labels = &template["metadata"]["labels"];
        for key in ["app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of"] {
            assert!(labels[key].is_string(), "{what}: pod label {key}");
        }
        let annotations = &template["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{what}");
        assert_eq!(annotations["prometheus.io/path"], "/metrics", "{what}");
        let containers = template["spec"]["containers"].as_array().unwrap();
        if containers[0]["image"] == IMAGE {
            assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string(), "{what}");
            for container in containers {
                assert_eq!(port_named(container, "metrics"), Some(METRICS_PORT), "{what}: containerPort `metrics`");
                let resources = &container["resources"];
                for key in ["requests", "limits"] {
                    for what_of in ["cpu", "memory"] {
                        assert!(!resources[key][what_of].is_null(), "{what}: resources.{key}.{what_of}");
                    }
                }
            }
        }
    }

    // Actors: a Deployment of 2, no server, so no gRPC probe.
    let actor = find("Deployment", "actor");
    assert_eq!(actor["spec"]["replicas"], 2);
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert!(actor["spec"]["template"]["spec"]["containers"][0][probe]["grpc"].is_null(), "actor: no gRPC {probe}");
    }
    // Replay and learner: StatefulSets with their volume, 60 s to shut down.
    for (name, volume_path) in [("replay", "/data/replay"), ("learner", "/data/runs")] {
        let set = find("StatefulSet", name);
        assert_eq!(set["spec"]["serviceName"], name);
        assert_eq!(set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 60, "{name}");
        let claim = set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as_str().unwrap();
        let mounts = &set["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(
            mounts.as_array().unwrap().iter().any(|m| m["name"] == claim && m["mountPath"] == volume_path),
            "{name} mounts its claim `{claim}` at {volume_path}"
        );
    }
    // The keypoint service: one GPU, device cuda.
    let keypoints = &find("Deployment", "keypoint-service")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(keypoints["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert!(keypoints["env"].as_array().unwrap().iter().any(|v| v["name"] == "PERMAKEY__DEVICE" && v["value"] == "cuda"));
    // The keypoint model: ReadWriteMany, written by the Job, read-only in keypoint-service and learner.
    assert_eq!(find("PersistentVolumeClaim", "keypoint-model")["spec"]["accessModes"], serde_json::json!(["ReadWriteMany"]));
    for (kind, name, read_only) in [("Job", "pretrain-keypoints", false), ("Deployment", "keypoint-service", true), ("StatefulSet", "learner", true)] {
        let spec = &find(kind, name)["spec"]["template"]["spec"];
        let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["persistentVolumeClaim"]["claimName"] == "keypoint-model");
        let volume = volume.unwrap_or_else(|| panic!("{kind} {name} has no volume of the claim keypoint-model"))["name"].clone();
        let mount = spec["containers"][0]["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == volume);
        let mount = mount.unwrap_or_else(|| panic!("{kind} {name} does not mount keypoint-model"));
        assert_eq!(mount["mountPath"], "/data/keypoints", "{kind} {name}");
        assert_eq!(mount["readOnly"].as_bool().unwrap_or(false), read_only, "{kind} {name}: readOnly");
    }
    // Prometheus: pods of the namespace, honouring the annotations, `component` from the pod label.
    let prometheus = find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"].as_str().unwrap();
    for needle in [
        "role: pod",
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
        "__meta_kubernetes_pod_annotation_prometheus_io_port",
        "__meta_kubernetes_pod_annotation_prometheus_io_path",
        "__meta_kubernetes_pod_label_app_kubernetes_io_component",
        "target_label: component",
    ] {
        assert!(prometheus.contains(needle), "prometheus.yml lacks `{needle}`");
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let path = k8s_dir().join("Kustomization");
    let docs = yaml_documents(std::slice::from_ref(&path));
    assert_eq!(docs.len(), 1);
    let listed: BTreeSet<String> = strings(&docs[0].1["resources"]).into_iter().collect();
    let files: BTreeSet<String> =
        manifest_files().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, files, "deploy/k8s/Kustomization's resources and the manifests differ");
    // `kubectl apply -f deploy/k8s/` applies the folder's *.yaml in name order: the namespace first.
    let first = &objects()[0].1;
    assert_eq!((first["kind"].as_str(), first["metadata"]["name"].as_str()), (Some("Namespace"), Some(NAMESPACE)));
    for name in ["kustomization.yaml", "kustomization.yml"] {
        assert!(!k8s_dir().join(name).exists(), "deploy/k8s/{name} would break `kubectl apply -f deploy/k8s/`: name it Kustomization");
    }
}

#[test]
fn every_grpc_component_reads_the_token_from_the_secret() {
    let secret = find("Secret", "permakey-token");
    assert!(secret["stringData"]["token"].is_string(), "the Secret permakey-token has a `token` key");
    assert_eq!(
        secret["stringData"]["token"],
        pkrl_proto::security::PLACEHOLDER_TOKEN,
        "the shipped token is the placeholder the servers warn about"
    );
    // Sorts right after the namespace, so `kubectl apply -f deploy/k8s/` creates it before the pods.
    assert_eq!(objects()[1].1["kind"], "Secret");
    for (kind, name) in [("StatefulSet", "replay"), ("Deployment", "keypoint-service"), ("StatefulSet", "learner"), ("Deployment", "actor")] {
        let spec = &find(kind, name)["spec"]["template"]["spec"];
        let container = &spec["containers"][0];
        let token_file = container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "PERMAKEY__SECURITY__TOKEN_FILE")
            .and_then(|v| v["value"].as_str())
            .unwrap_or_else(|| panic!("{kind} {name}: no PERMAKEY__SECURITY__TOKEN_FILE"));
        let volume = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["secret"]["secretName"] == "permakey-token")
            .unwrap_or_else(|| panic!("{kind} {name}: no volume of the Secret permakey-token"));
        let mount = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("{kind} {name}: the Secret's volume is not mounted"));
        assert_eq!(mount["readOnly"], true, "{kind} {name}");
        let expected = format!("{}/token", mount["mountPath"].as_str().unwrap());
        assert_eq!(token_file, expected, "{kind} {name}: security.token_file is the Secret's `token` key");
    }
}
